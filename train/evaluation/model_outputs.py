"""The model's own outputs, measured with networks and statistics no training loss has seen:
two-sample test, independent FD, fixed-pattern share, colour control read by the judges, input
retrieval, feature spread per level, reconstruction (`evaluate`)."""

from __future__ import annotations

import time

import torch

from train.evaluation.data import sample_tags
from twingan.vocab import TagVocab

RETRIEVAL_VECTORS = 5  # fixed tag vectors the input retrieval is also reported for (the first is the gated one)
TWO_SAMPLE_STEPS = 400  # Adam steps of the two-sample CNN: 131 s wall on one thread of a loaded 2-core machine
CONFIRM_RECALL = 0.5  # a judge confirms a colour that it reads right on at least half of the real faces of it ...
CONFIRM_SUPPORT = 10  # ... over at least this many held-out faces (fewer tell too little)



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
    same thing for everyone there (the grid of the cpu-small checkpoint shipped on 2026-11-25 came
    with 0.039 vs 0.274 at the latent).
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


def evaluate_reverse(model, sets: dict, seed: int = 0, two_sample_steps: int = TWO_SAMPLE_STEPS) -> dict:
    """The anime -> human direction, as `reverse_*` keys: held-out anime test faces (as many as the
    test selfies) translated to human portraits, against the test selfies. The two-sample test
    (50%: indistinguishable from the selfies), its calibration on the raw anime faces, the fixed
    pattern share, and input retrieval (does each portrait keep its anime face's layout?)."""
    from twingan.metrics import classifier_two_sample_test, fixed_pattern_share, input_retrieval

    selfies, anime = sets["selfies"], sets["anime"]
    g = torch.Generator().manual_seed(seed + 1)
    inputs = anime[torch.randperm(len(anime), generator=g)[:len(selfies)]]
    humans = batched(lambda x: model.translate(x, "anime", "human"), inputs)
    out = {"reverse_n": len(inputs), "reverse_fixed_pattern_share": fixed_pattern_share(humans)}
    if two_sample_steps > 0:
        for key, images in (("reverse_two_sample", humans), ("reverse_two_sample_raw", inputs)):
            test = classifier_two_sample_test(images, selfies, steps=two_sample_steps, seed=seed)
            out.update({f"{key}_{k}": v for k, v in test.items()})
    out.update({f"reverse_retrieval_{k}": v for k, v in input_retrieval(inputs, humans).items()})
    return out


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

