"""Evaluate an exported TwinGAN on the held-out test splits; print a table and write JSON + a grid PNG.

`python -m train.evaluate CHECKPOINT [--data ../shared/data] [--out eval.json] [--grid grid.png]`
From Python: `evaluate_checkpoint("checkpoints/NAME", out="eval.json")` returns the metrics dict.

Headline: measures that no training loss and no data filter has seen.
- classifier two-sample test: a fresh small CNN, trained here on half of the translated test selfies
  and half of an equal number of real anime test faces, scores the other halves
  (`twingan.metrics.classifier_two_sample_test`); 50% means it cannot tell them apart.
- independent Frechet distance (FD) in the features of `checkpoints/featnet-eval`, a residual net
  trained self-supervised (contrastive, SimCLR) for evaluation only: translated test selfies vs
  real anime test faces, with the floor (held-out real anime vs the same reference) and the ceiling
  (raw selfies); all three use the same number of images, so their small-sample bias is the same.
  `fraction` = (FD - floor) / (ceiling - floor): 0 is as good as real anime, 1 as far as selfies.
- fixed-pattern share (`twingan.metrics.fixed_pattern_share`) of the translations with one tag vector
  for all inputs, beside that of as many real anime faces: a grid drawn over every output scores high.
- hair / eye colour control: every test selfie translated with every colour; accuracy of
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
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from train.config import REPO_ROOT, default_data_root
from train.data import decode_images, list_images
from twingan.vocab import TagVocab

EVAL_TAGGER = REPO_ROOT / "checkpoints" / "tagger-eval"
EVAL_TAGGER_RESIDUAL = REPO_ROOT / "checkpoints" / "tagger-eval-residual"
FEATNET = REPO_ROOT / "checkpoints" / "featnet-eval"
RETRIEVAL_VECTORS = 5  # fixed tag vectors the input retrieval is also reported for (the first is the gated one)
TWO_SAMPLE_STEPS = 400  # Adam steps of the two-sample CNN: 131 s wall on one thread of a loaded 2-core machine
# Issue 11's quality gates: metric -> (direction, threshold). tests/test_shipped_checkpoint.py checks them.
# The colour controls are gated over the colours tagger-eval confirms on real anime (`confirmed_colours`);
# over all colours they are reported beside the same threshold.
GATES = {"fixed_pattern_share": ("<=", 0.08), "indep_fd_fraction": ("<=", 0.6),
         "hair_accuracy_confirmed": (">=", 0.95), "eye_accuracy_confirmed": (">=", 0.85), "retrieval_top1": (">=", 0.80)}
CONFIRM_RECALL = 0.5  # a judge confirms a colour that it reads right on at least half of the real faces of it ...
CONFIRM_SUPPORT = 10  # ... over at least this many held-out faces (fewer tell too little)


def load_test_sets(data: Path, resolution: int, vocab: TagVocab, limit: int = 0) -> dict:
    """Test selfies (testA), real anime test faces (testB + anime_tags test) with their tags."""
    from train.tags_data import read_tags_csv

    folder = data / "selfie2anime" / "testA"
    files = list_images(folder)[: limit or None]
    selfies, _, _ = decode_images(folder, files, resolution)
    parts, tags = [], []
    folder = data / "selfie2anime" / "testB"
    if folder.is_dir():
        files = list_images(folder)[: limit or None]
        imgs, _, _ = decode_images(folder, files, resolution)
        parts.append(imgs)
        tags.append(torch.full((len(imgs), vocab.dim), float("nan")))  # untagged
    sets = {"selfies": selfies.float() / 255}
    csv_path = data / "anime_tags" / "tags.csv"
    if csv_path.is_file():
        rows = read_tags_csv(csv_path, vocab, "test")
        files = sorted(rows)
        imgs, kept, _ = decode_images(data / "anime_tags" / "images", files, resolution)
        # All of them, whatever `limit`: the judges' recall on real faces decides which colours they confirm.
        sets["tagged_anime"] = imgs.float() / 255
        sets["tagged_tags"] = torch.tensor([rows[files[i]].vector for i in kept])
        n = min(limit * 5, len(imgs)) if limit else len(imgs)
        parts.append(imgs[:n])
        tags.append(sets["tagged_tags"][:n])
    if not parts:
        raise FileNotFoundError(f"no anime test images under {data} (selfie2anime/testB or anime_tags)")
    return {**sets, "anime": torch.cat(parts).float() / 255, "anime_tags": torch.cat(tags)}


def sample_tags(anime_tags: torch.Tensor, n: int, vocab: TagVocab, generator: torch.Generator) -> torch.Tensor:
    """n tag vectors drawn from the known rows of the anime test tags (colours always set)."""
    known = anime_tags[~torch.isnan(anime_tags).any(1)]
    rows = known[torch.randint(len(known), (n,), generator=generator)].clone()
    for sl, k in ((vocab.hair_slice, len(vocab.hair)), (vocab.eye_slice, len(vocab.eye))):
        empty = rows[:, sl].sum(1) == 0
        pick = torch.randint(k, (n,), generator=generator)
        rows[empty, sl] = torch.nn.functional.one_hot(pick[empty], k).float()
    return rows


@torch.no_grad()
def batched(fn, *tensors, batch: int = 100) -> torch.Tensor:
    n = tensors[0].shape[0]
    return torch.cat([fn(*(t[i:i + batch] if t is not None else None for t in tensors)) for i in range(0, n, batch)])


def to_anime(model, selfies: torch.Tensor, tags: torch.Tensor) -> torch.Tensor:
    """Human -> anime translations of (N, 3, R, R) selfies with (N, dim) tags, in batches."""
    return batched(lambda x, t: model.translate(x, "human", "anime", t), selfies, tags)


def asking(tags: torch.Tensor, group: slice, colour: int) -> torch.Tensor:
    """A copy of (N, dim) `tags` with the colour group at `group` (a vocab slice) one-hot at `colour`."""
    asked = tags.clone()
    asked[:, group] = 0
    asked[:, group.start + colour] = 1
    return asked


def one_vector(model, selfies: torch.Tensor, row: torch.Tensor) -> torch.Tensor:
    """Every selfie translated with the same tag vector `row` (dim,): the input is all that differs."""
    return to_anime(model, selfies, row.expand(len(selfies), -1))


@torch.no_grad()
def colour_control(model, selfies: torch.Tensor, tags: torch.Tensor, group: str, readers: list,
                   step=None) -> list[dict]:
    """Every selfie translated in every colour of `group` ("hair" or "eye"; the other tags as in
    `tags`), read by each tagger in `readers`: one `control_accuracy` dict per reader, plus its
    `stderr`, the standard error of the accuracy over the selfies (each selfie's share of colours
    read right is one sample), so a gap to a gate can be told from the luck of the test set.
    `step()` is called after each colour (a progress bar)."""
    from twingan.metrics import control_accuracy

    vocab = model.config.vocab
    names, sl = (vocab.hair, vocab.hair_slice) if group == "hair" else (vocab.eye, vocab.eye_slice)
    requested, read = [], [[] for _ in readers]
    for c in range(len(names)):
        portraits = to_anime(model, selfies, asking(tags, sl, c))
        for probs, reader in zip(read, readers):
            probs.append(batched(reader.tag_probs, portraits))
        requested.append(torch.full((len(selfies),), c))
        if step is not None:
            step()
    requested, results = torch.cat(requested), []
    for probs in map(torch.cat, read):
        acc = control_accuracy(requested, probs, vocab, group)
        # The colour-major order above: row c holds every selfie asked for colour c.
        acc["hits"] = (probs[:, sl].argmax(-1).cpu() == requested).view(len(names), -1)
        acc["stderr"] = accuracy_over(acc["hits"], names, names)[1]
        results.append(acc)
    return results


def accuracy_over(hits: torch.Tensor, names: list[str], counted: list[str]) -> tuple[float, float]:
    """Control accuracy over the colours in `counted`, from `hits` (colours x selfies, in `names`
    order), and its standard error over the selfies (each selfie's share of those colours read right
    is one sample); NaN for no colour."""
    rows = [names.index(c) for c in counted]
    if not rows:
        return float("nan"), float("nan")
    per_selfie = hits[rows].float().mean(0)
    stderr = (per_selfie.std() / len(per_selfie) ** 0.5).item() if len(per_selfie) > 1 else float("nan")
    return per_selfie.mean().item(), stderr


def confirmed_colours(recall: dict, support: dict) -> list[str]:
    """The colours a judge confirms on real anime: read right on at least CONFIRM_RECALL of the held-out
    real faces of that colour, over at least CONFIRM_SUPPORT of them. A portrait read as a colour the
    judge misses on real faces says little about the portrait, so only these count toward a gate."""
    return [c for c, r in recall.items() if support.get(c, 0) >= CONFIRM_SUPPORT and r >= CONFIRM_RECALL]


def levels_read(model) -> list[int]:
    """The skip resolutions the generator concatenates at the model's output size."""
    return [r for r in model.config.resolutions[1:] if r <= model.resolution and model.config.uses_skip(r)]


@torch.no_grad()
def feature_spread(model, selfies: torch.Tensor, anime: torch.Tensor) -> dict:
    """Per level the generator reads (the 4x4 latent and each skip): the std across inputs of the
    human-encoded selfie features, of the anime-encoded anime features, and their ratio.

    A ratio far below 1 means the person hardly moves that level, so the generator draws the
    same thing for everyone there (the issue-11 grid came with 0.039 vs 0.274 at the latent).
    """
    def encode(x: torch.Tensor, domain: str) -> dict:
        parts = [model.encode(x[i:i + 100], domain) for i in range(0, len(x), 100)]
        out = {"latent": torch.cat([latent for latent, _ in parts])}
        for r in levels_read(model):
            out[f"skip{r}"] = torch.cat([skips[r] for _, skips in parts])
        return out

    human, other = encode(selfies, "human"), encode(anime, "anime")
    result = {}
    for level in human:
        h, a = human[level].std(0).mean().item(), other[level].std(0).mean().item()
        result[level] = {"human_std": h, "anime_std": a, "ratio": h / a if a > 0 else float("nan")}
    return result


def _fd_triplet(features, translated: torch.Tensor, held_out: torch.Tensor, selfies: torch.Tensor,
                reference: torch.Tensor) -> dict:
    """FD of translated / held-out real anime (floor) / raw selfies (ceiling) against `reference`."""
    from twingan.metrics import frechet_distance

    ref = batched(features, reference)
    fd = frechet_distance(batched(features, translated), ref)
    floor = frechet_distance(batched(features, held_out), ref)
    ceiling = frechet_distance(batched(features, selfies), ref)
    return {"fd": fd, "fd_floor": floor, "fd_ceiling": ceiling,
            "fd_fraction": (fd - floor) / (ceiling - floor) if ceiling > floor else float("nan")}


@torch.no_grad()
def evaluate(model, judge, sets: dict, seed: int = 0, featnet=None,
             two_sample_steps: int = TWO_SAMPLE_STEPS, second_judge=None) -> tuple[dict, dict]:
    """All metrics as a dict, plus the tensors for the grid.

    `featnet` (a `twingan.featnet.FeatureNet`) gives the independent FD; `two_sample_steps` = 0
    skips the two-sample test (its CNN is the one slow part); `second_judge` (a Tagger of another
    architecture) reads the colour control translations too, as `*_accuracy_second` keys.
    """
    from twingan.metrics import classifier_two_sample_test, fixed_pattern_share, input_retrieval

    vocab = model.config.vocab
    g = torch.Generator().manual_seed(seed)
    selfies, anime = sets["selfies"], sets["anime"]
    n = len(selfies)
    if len(anime) < 2 * n:
        raise ValueError(f"need at least {2 * n} anime test images for the floor, got {len(anime)}")
    perm = torch.randperm(len(anime), generator=g)
    held_out, reference = anime[perm[:n]], anime[perm[n:]]
    tags = sample_tags(sets["anime_tags"], n, vocab, g)
    translated = to_anime(model, selfies, tags)
    fixed = one_vector(model, selfies, tags[0])  # one tag vector for every input, so a fixed pattern shows

    out = {"n_selfies": n, "n_anime_reference": len(reference)}
    if two_sample_steps > 0:
        t0 = time.time()
        test = classifier_two_sample_test(translated, held_out, steps=two_sample_steps, seed=seed)
        out.update({f"two_sample_{k}": v for k, v in test.items()}, two_sample_seconds=time.time() - t0)
    if featnet is not None:
        indep = _fd_triplet(featnet.features, translated, held_out, selfies, reference)
        out.update({f"indep_{k}": v for k, v in indep.items()})
    out.update(fixed_pattern_share=fixed_pattern_share(fixed), fixed_pattern_share_anime=fixed_pattern_share(held_out),
               fixed_pattern_share_selfies=fixed_pattern_share(selfies))
    # Trained against: the recipe matched the training tagger's feature moments, and tagger-eval
    # has its architecture, objective and data, so this FD measures what training optimised.
    out.update(_fd_triplet(judge.features, translated, held_out, selfies, reference))
    readers = {suffix: reader for suffix, reader in (("", judge), ("_second", second_judge)) if reader is not None}
    # Each judge's recall on all real anime test faces of each colour: what it confirms on real
    # faces, beside what it confirms on the portraits (a colour it misses there caps the control).
    for suffix, reader in readers.items():
        out.update(judge_recall_on_real(reader, sets.get("tagged_anime", anime), sets.get("tagged_tags", sets["anime_tags"]),
                                        vocab, suffix))
    for group in ("hair", "eye"):
        names = vocab.hair if group == "hair" else vocab.eye
        for suffix, acc in zip(readers, colour_control(model, selfies, tags, group, list(readers.values()))):
            out[f"{group}_accuracy{suffix}"] = acc["accuracy"]
            out[f"{group}_accuracy_stderr{suffix}"] = acc["stderr"]
            out[f"{group}_per_colour{suffix}"] = acc["per_class"]
            confirmed = confirmed_colours(out.get(f"{group}_judge_recall_real{suffix}", {}),
                                          out.get(f"{group}_judge_support_real{suffix}", {}))
            out[f"{group}_confirmed{suffix}"] = confirmed
            (out[f"{group}_accuracy_confirmed{suffix}"],
             out[f"{group}_accuracy_confirmed_stderr{suffix}"]) = accuracy_over(acc["hits"], names, confirmed)
    retrieval = input_retrieval(selfies, fixed)
    out.update({f"retrieval_{k}": v for k, v in retrieval.items()})
    # The gated figure uses one tag vector; how much it depends on which one was drawn (reported, not gated).
    out["retrieval_top1_per_vector"] = [retrieval["top1"]] + [
        input_retrieval(selfies, one_vector(model, selfies, row))["top1"] for row in tags[1:RETRIEVAL_VECTORS]]
    out["spread"] = feature_spread(model, selfies, held_out)
    out["recon_l1_human"] = (batched(lambda x: model.translate(x, "human", "human"), selfies) - selfies).abs().mean().item()
    anime_tags = torch.nan_to_num(sets["anime_tags"], nan=0.0)
    rec = batched(lambda x, t: model.translate(x, "anime", "anime", t), anime, anime_tags)
    out["recon_l1_anime"] = (rec - anime).abs().mean().item()
    return out, {"selfies": selfies, "translated": translated, "tags": tags}


def judge_recall_on_real(judge, anime: torch.Tensor, anime_tags: torch.Tensor, vocab: TagVocab,
                         suffix: str = "") -> dict:
    """A judge's per-colour recall on the real anime faces whose colour is known, and their counts:
    `{group}_judge_recall_real{suffix}` and `{group}_judge_support_real{suffix}` for hair and eye."""
    from twingan.metrics import control_accuracy

    out = {}
    for group, names, sl in (("hair", vocab.hair, vocab.hair_slice), ("eye", vocab.eye, vocab.eye_slice)):
        colour = anime_tags[:, sl]
        known = ~torch.isnan(colour).any(1) & (colour.sum(1) > 0)  # NaN: untagged (testB); zeros: colour unknown
        if not bool(known.any()):
            continue
        labels = colour[known].argmax(1)
        acc = control_accuracy(labels, batched(judge.tag_probs, anime[known]), vocab, group)
        out[f"{group}_judge_recall_real{suffix}"] = acc["per_class"]
        out[f"{group}_judge_support_real{suffix}"] = {names[c]: int((labels == c).sum()) for c in labels.unique().tolist()}
    return out


def comparison_grid(model, shown: dict, path: Path, n: int = 8) -> Path:
    """Rows: input selfies | translations (sampled tags) | reconstructions; then one input in every hair colour."""
    from torchvision.utils import save_image

    vocab = model.config.vocab
    x = shown["selfies"][:n]
    rows = [x, shown["translated"][:n], model.translate(x, "human", "human")]
    one = x[:1].expand(len(vocab.hair), -1, -1, -1)
    t = shown["tags"][:1].expand(len(vocab.hair), -1).clone()
    t[:, vocab.hair_slice] = torch.eye(len(vocab.hair))
    colours = model.translate(one, "human", "anime", t)
    path.parent.mkdir(parents=True, exist_ok=True)
    pad = torch.ones(max(0, len(vocab.hair) - n), *x.shape[1:])
    grid = torch.cat([torch.cat([r, pad]) for r in rows] + [colours])
    size = max(128, grid.shape[-1])  # small models are shown enlarged (nearest, so pixels stay honest)
    grid = torch.nn.functional.interpolate(grid, size=size, mode="nearest")
    save_image(grid, path, nrow=max(n, len(vocab.hair)), padding=2, pad_value=1.0)
    return path


def passes(metrics: dict, key: str) -> bool:
    """Whether `metrics[key]` meets its gate in GATES."""
    direction, threshold = GATES[key]
    return metrics[key] <= threshold if direction == "<=" else metrics[key] >= threshold


def _pct_se(m: dict, key: str, suffix: str = "") -> str:
    """`m[key + suffix]` as a percentage, with its standard error."""
    return f"{100 * m[key + suffix]:.1f}% +- {100 * m[f'{key}_stderr{suffix}']:.1f}"


def format_table(m: dict) -> str:
    def gate(key: str) -> str:
        direction, threshold = GATES[key]
        shown = f"{100 * threshold:.0f}%" if direction == ">=" else f"{threshold:g}"
        return f"gate {direction} {shown}: {'pass' if passes(m, key) else 'FAIL'}"

    lines = ["| metric | value |", "|---|---|"]
    if "two_sample_accuracy" in m:
        lines.append(f"| two-sample test: held-out accuracy telling translations from real anime, "
                     f"{m['two_sample_n_test'][0]} + {m['two_sample_n_test'][1]} images (50% = indistinguishable) "
                     f"| {100 * m['two_sample_accuracy']:.1f}% +- {100 * m['two_sample_stderr']:.1f} |")
    if "indep_fd" in m:
        lines.append(f"| independent FD (featnet-eval) translated selfies vs anime | {m['indep_fd']:.2f} |")
        lines.append(f"| independent FD floor (real anime) / ceiling (raw selfies) "
                     f"| {m['indep_fd_floor']:.2f} / {m['indep_fd_ceiling']:.2f} |")
        lines.append(f"| independent FD fraction floor->ceiling ({gate('indep_fd_fraction')}) | {m['indep_fd_fraction']:.3f} |")
    lines.append(f"| fixed-pattern share of the translations ({gate('fixed_pattern_share')}); real anime, selfies "
                 f"| {m['fixed_pattern_share']:.3f}; {m['fixed_pattern_share_anime']:.3f}, "
                 f"{m['fixed_pattern_share_selfies']:.3f} |")
    for group in ("hair", "eye"):
        n_all, confirmed = len(m[f"{group}_per_colour"]), m[f"{group}_confirmed"]
        lines.append(f"| {group} colour control, the {len(confirmed)} of {n_all} colours tagger-eval confirms on "
                     f"real anime ({gate(f'{group}_accuracy_confirmed')}), +- standard error over the selfies "
                     f"| {_pct_se(m, f'{group}_accuracy_confirmed')} |")
        reference = GATES[f"{group}_accuracy_confirmed"][1]
        lines.append(f"| {group} colour control, all {n_all} colours (reported; "
                     f"{'meets' if m[f'{group}_accuracy'] >= reference else 'under'} {100 * reference:.0f}%) "
                     f"| {_pct_se(m, f'{group}_accuracy')} |")
    if "eye_accuracy_second" in m:
        lines.append(f"| hair / eye colour control read by tagger-eval-residual (another architecture), all colours "
                     f"| {_pct_se(m, 'hair_accuracy', '_second')} / {_pct_se(m, 'eye_accuracy', '_second')} |")
        lines.append(f"| the same over the {len(m['hair_confirmed_second'])} hair / {len(m['eye_confirmed_second'])} eye "
                     f"colours it confirms on real anime | {_pct_se(m, 'hair_accuracy_confirmed', '_second')} / "
                     f"{_pct_se(m, 'eye_accuracy_confirmed', '_second')} |")
    lines.append(f"| input retrieval top-1 from the output's grey layout, chance {100 * m['retrieval_chance_top1']:.1f}% "
                 f"({gate('retrieval_top1')}) | {100 * m['retrieval_top1']:.1f}% |")
    per_vector = m["retrieval_top1_per_vector"]
    lines.append(f"| input retrieval top-1 with {len(per_vector)} fixed tag vectors, the first gated (mean) | "
                 + ", ".join(f"{100 * r:.1f}%" for r in per_vector)
                 + f" ({100 * sum(per_vector) / len(per_vector):.1f}%) |")
    lines.append(f"| median rank of the own input (of {m['n_selfies']}) | {m['retrieval_median_rank']:.0f} |")
    lines.append(f"| output spread across inputs / input spread | {m['retrieval_spread']:.2f} |")
    lines.append(f"| trained against: tagger-eval FD translated / floor / ceiling | "
                 f"{m['fd']:.2f} / {m['fd_floor']:.2f} / {m['fd_ceiling']:.2f} |")
    lines.append(f"| trained against: tagger-eval FD fraction | {m['fd_fraction']:.3f} |")
    for level, v in m["spread"].items():
        lines.append(f"| {level}: std across inputs, human / anime encoded (ratio) "
                     f"| {v['human_std']:.3f} / {v['anime_std']:.3f} ({v['ratio']:.2f}) |")
    lines.append(f"| reconstruction L1, human | {m['recon_l1_human']:.4f} |")
    lines.append(f"| reconstruction L1, anime | {m['recon_l1_anime']:.4f} |")
    per = ", ".join(f"{k} {100 * v:.0f}%" for k, v in m["hair_per_colour"].items())
    per_eye = ", ".join(f"{k} {100 * v:.0f}%" for k, v in m["eye_per_colour"].items())
    text = "\n".join(lines) + f"\n\nhair per colour: {per}\neye per colour: {per_eye}"
    if "eye_per_colour_second" in m:
        text += "\neye per colour, tagger-eval-residual: " + ", ".join(
            f"{k} {100 * v:.0f}%" for k, v in m["eye_per_colour_second"].items())
    for suffix, name in (("", "tagger-eval"), ("_second", "tagger-eval-residual")):
        if f"eye_judge_recall_real{suffix}" in m:
            support = m[f"eye_judge_support_real{suffix}"]
            text += f"\n{name} on real anime test faces, eye recall per colour (of n): " + ", ".join(
                f"{k} {100 * v:.0f}% ({support[k]})" for k, v in m[f"eye_judge_recall_real{suffix}"].items())
        for group in ("hair", "eye"):
            if f"{group}_confirmed{suffix}" in m:
                left = [c for c in m[f"{group}_per_colour{suffix}"] if c not in m[f"{group}_confirmed{suffix}"]]
                text += (f"\n{name} confirms {len(m[f'{group}_confirmed{suffix}'])} {group} colours (read right on >= "
                         f"{100 * CONFIRM_RECALL:.0f}% of >= {CONFIRM_SUPPORT} real faces); not: {', '.join(left) or 'none'}")
    return text


def evaluate_checkpoint(checkpoint, data=None, judge=EVAL_TAGGER, featnet=FEATNET, limit: int = 0, seed: int = 0,
                        two_sample_steps: int = TWO_SAMPLE_STEPS, out=None, grid=None,
                        second_judge=EVAL_TAGGER_RESIDUAL) -> dict:
    """Load a checkpoint folder, evaluate it on the test splits and return the metrics dict.

    Writes the JSON to `out` and the comparison grid to `grid` (default: next to `out`) when `out`
    is given. Raises CheckpointError for a bad checkpoint, ValueError for the training tagger as
    judge, FileNotFoundError for a missing data folder.
    """
    from twingan.checkpoint import load_pretrained
    from twingan.featnet import FeatureNet
    from twingan.model import TwinGAN
    from twingan.tagger import Tagger

    for j in (judge, second_judge):
        if j is not None and Path(j).resolve() == (REPO_ROOT / "checkpoints" / "tagger").resolve():
            raise ValueError("the training tagger cannot judge its own generator; pass checkpoints/tagger-eval")
    data = Path(data or default_data_root())
    model = load_pretrained(TwinGAN, checkpoint)
    tagger = load_pretrained(Tagger, judge)
    tagger2 = load_pretrained(Tagger, second_judge) if second_judge is not None else None
    features = load_pretrained(FeatureNet, featnet)
    if not data.is_dir():
        raise FileNotFoundError(f"data folder {data} not found (set --data or TWINGAN_DATA)")
    sets = load_test_sets(data, model.config.resolution, model.config.vocab, limit)
    t0 = time.time()
    metrics, shown = evaluate(model, tagger, sets, seed, features, two_sample_steps, tagger2)
    metrics.update(checkpoint=str(checkpoint), judge=str(judge), featnet=str(featnet),
                   second_judge=None if second_judge is None else str(second_judge),
                   resolution=model.config.resolution, seconds=time.time() - t0)
    if out is not None:
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(metrics, indent=2) + "\n")
        comparison_grid(model, shown, Path(grid) if grid else out.with_suffix(".png"))
    return metrics


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m train.evaluate", description=__doc__.splitlines()[0])
    p.add_argument("checkpoint", help="exported TwinGAN folder (config.json + model.safetensors)")
    p.add_argument("--data", default=None, help="data root (default $TWINGAN_DATA or ../shared/data)")
    p.add_argument("--judge", default=str(EVAL_TAGGER), help="evaluation tagger (never the training one)")
    p.add_argument("--second-judge", default=str(EVAL_TAGGER_RESIDUAL),
                   help="evaluation tagger of another architecture; 'none' skips it")
    p.add_argument("--featnet", default=str(FEATNET), help="independent feature network for the FD")
    p.add_argument("--out", default=None, help="JSON file (default CHECKPOINT/eval.json)")
    p.add_argument("--grid", default=None, help="comparison grid PNG (default next to the JSON)")
    p.add_argument("--limit", type=int, default=0, help="quick checks: only this many test selfies and testB faces, 5x as many anime_tags faces")
    p.add_argument("--two-sample-steps", type=int, default=TWO_SAMPLE_STEPS,
                   help="training steps of the two-sample test's CNN (0 skips the test)")
    p.add_argument("--quick", action="store_true", help="skip the two-sample test (same as --two-sample-steps 0)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    from twingan.checkpoint import CheckpointError

    out = Path(args.out) if args.out else Path(args.checkpoint) / "eval.json"
    try:
        metrics = evaluate_checkpoint(args.checkpoint, args.data, args.judge, args.featnet, args.limit, args.seed,
                                      0 if args.quick else args.two_sample_steps, out, args.grid,
                                      None if args.second_judge == "none" else args.second_judge)
    except (CheckpointError, ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(format_table(metrics))
    print(f"\nwrote {out} and {Path(args.grid) if args.grid else out.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
