"""Evaluate an exported TwinGAN on the held-out test splits; print a table and write JSON + grid PNGs.

`python -m train.evaluation CHECKPOINT [--data ../shared/data] [--out eval.json] [--grid grid.png] [--photos DIR]`
From Python: `train.evaluation.checkpoint.evaluate_checkpoint("checkpoints/NAME", out="eval.json")` returns the
metrics dict.

What the user sees: the photos go through the app's `twingan.pipeline.TranslationPipeline`, loaded
with the checkpoint (face detection, crop, translation and whatever the pipeline does after it, such
as the anime upscaler to display size, at the app's default controls: the hair colour kept from the
photo, the eyes the model's choice; `app_pipeline_notes` says which helpers were off), and the
portraits it returns are taken at 128 px: `faces[0]` (the largest face) of each test selfie (128 px
face crops, detected all the same; the table says on how many a face was found), and every face
found in the real photos (`--photos`; default: examples/ and the data's photos/).
- sharpness ratio (`twingan.metrics.sharpness_ratio`): the portraits' spectral magnitude above a
  quarter of the sampling rate at 128 px, over that of one half of the real anime test faces at
  128 px. Beside it, its calibration: the other half of the real anime (about 1), and that half
  taken down to 64 px and back up (bicubic), and to 32 px and back.
- two-sample test at 128 px: as below, but the CNN sees 128 px, the app's portraits of the test
  selfies against as many real anime faces at 128 px, run five times with their own seeds (which
  halves train the CNN, its start) and gated on the mean, as one run moves by several points from
  seed to seed (`--app-two-sample-seeds`); beside it, the same test on real anime against
  real anime (about 50%), on real anime taken to 64 px and back against real anime (how well the
  test sees the blur of a 64 px portrait), on real anime taken to 64 px and back up through the
  anime upscaler as the app shows portraits (what it would read of a translator that drew real anime
  at 64 px), and on the portraits of the same selfies asked for a
  hair and eye colour pair drawn from the real anime test tags instead of the app's defaults (how
  much of the gap is the colours: the person's own hair is mostly dark, real anime hair mostly
  bright), and, as many times as the gated test, on the reference's two real anime data sets
  against each other (selfie2anime testB against anime_tags test: how far apart the test reads two
  real anime sets). Sample sizes, steps and standard errors are reported.
- `eval_photos.png` (beside the grid, GRID_photos.png): each real photo's face crop and its portrait
  as the app returns them, at display size (256 px).

The model's own outputs: measures that no training loss and no data filter has seen.
- classifier two-sample test at the model's resolution: a fresh small CNN, trained here on half of
  the translated test selfies and half of an equal number of real anime test faces, scores the other
  halves (`twingan.metrics.classifier_two_sample_test`); 50% means it cannot tell them apart.
- independent Frechet distance (FD) in the features of `checkpoints/featnet-eval`, a residual net
  trained self-supervised (contrastive, SimCLR) for evaluation only: translated test selfies vs
  real anime test faces, with the floor (held-out real anime vs the same reference) and the ceiling
  (raw selfies); all three use the same number of images, so their small-sample bias is the same.
  `fraction` = (FD - floor) / (ceiling - floor): 0 is as good as real anime, 1 as far as selfies.
- fixed-pattern share (`twingan.metrics.fixed_pattern_share`) of the translations with one tag vector
  for all inputs, beside that of as many real anime faces: a grid drawn over every output scores high.
- hair / eye colour control (eye: reported, not gated): every test selfie translated with every colour; accuracy of
  `checkpoints/tagger-eval`'s top colour, overall and per colour. The gated reading counts only the
  colours the judge confirms on real anime (`confirmed_colours`: read right on at least half of the
  held-out anime_tags test faces of that colour, over at least 10 of them): a portrait read as a
  colour that the judge misses on real faces (orange eyes: 0 of 2) is no evidence either way.
  tagger-eval shares the training tagger's architecture and data, so the same translations are also
  read by `checkpoints/tagger-eval-residual`, a GroupNorm residual net: what fools one need not fool the other.
- input dependence (no network involved): every test selfie translated with one fixed tag vector;
  how often its grey low-resolution layout picks out its own input among all test selfies
  (`twingan.metrics.input_retrieval`), and how much the outputs vary at all; the gated figure uses
  the first drawn tag vector, and the same is reported for 4 more (it varies by tens of points).
Also reported: the tagger-eval FD, labelled "trained against" (the recipe matches the training
tagger's feature moments, and tagger-eval shares its architecture, objective and data); per level
the generator reads, the std across inputs of human-encoded vs anime-encoded features; reconstruction L1.

Gates (`train.evaluation.gates.GATES`, checked by tests/test_shipped_checkpoint.py; thresholds under --help): the sharpness
ratio and the 128 px two-sample test of the app's portraits of the test selfies, the fixed-pattern
share, the independent FD fraction, hair colour control over the colours the judge confirms, and
input retrieval. Eye colour control is reported, not gated.

Modules: `data` (the test splits, tag vectors, photo folders), `model_outputs` (the model's own
outputs), `app_outputs` (the app's portraits), `gates` (the gates and the table), `checkpoint`
(`evaluate_checkpoint`: load, measure, write), `__main__` (the command line), and `figures` (the
README's grids, `python -m train.evaluation.figures`).
"""
