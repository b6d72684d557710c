"""A time-boxed training run on a machine with a GPU: the data pack it trains from (`pack`:
`python -m train.device.pack`) and the steps around the training (`device`: environment and matmul
peak, collecting what comes back, inference latency), called by `scripts/device_train.sh`.
"""
