"""The helper models' trainers and their reports: the frozen tagger and the evaluation's judges
(`tagger`), the evaluation's independent feature net (`featnet`), the human hair classifier's report
(`hair_report`), the anime upscaler (`upscaler`, `upscaler_figure`), and the face crops of raw
photos (`prepare_faces`). Each is a command: `python -m train.helpers.NAME --help`.
"""
