"""The quality gates (`GATES`, checked by tests/test_shipped_checkpoint.py) and the table the
evaluation prints."""

from __future__ import annotations

from train.evaluation.app_outputs import APP_SIZE, SHARPNESS_BLURS, TWO_SAMPLE_BLUR
from train.evaluation.model_outputs import CONFIRM_RECALL, CONFIRM_SUPPORT

# The quality gates: metric -> (direction, threshold). tests/test_shipped_checkpoint.py checks them.
# The app's portraits are gated as the user sees them (sharpness, two-sample test at 128 px). Hair
# control is gated over the colours tagger-eval confirms on real anime (`confirmed_colours`); over all
# colours it is reported beside the same threshold. Eye control is reported, not gated.
GATES = {"app_sharpness_ratio": (">=", 0.5), "app_two_sample_accuracy": ("<=", 0.80),
         "fixed_pattern_share": ("<=", 0.08), "indep_fd_fraction": ("<=", 0.6),
         "hair_accuracy_confirmed": (">=", 0.90), "retrieval_top1": (">=", 0.80)}


def passes(metrics: dict, key: str) -> bool:
    """Whether `metrics[key]` meets its gate in GATES (a missing or NaN value does not)."""
    direction, threshold = GATES[key]
    value = metrics.get(key, float("nan"))
    return value <= threshold if direction == "<=" else value >= threshold


def _pct_se(m: dict, key: str, suffix: str = "") -> str:
    """`m[key + suffix]` as a percentage, with its standard error."""
    return f"{100 * m[key + suffix]:.1f}% +- {100 * m[f'{key}_stderr{suffix}']:.1f}"


PERCENT_GATES = {"app_two_sample_accuracy", "hair_accuracy_confirmed", "retrieval_top1"}  # shown as percentages


def _two_sample(m: dict, prefix: str) -> str:
    """The held-out accuracy of a two-sample test stored under `prefix`, with its standard error."""
    return f"{100 * m[f'{prefix}_accuracy']:.1f}% +- {100 * m[f'{prefix}_stderr']:.1f}"


def _seeds(m: dict, prefix: str = "app_two_sample") -> str:
    """", mean of k runs with their own seeds (a%, b%, ...)" when the test under `prefix` ran more than once."""
    runs = m.get(f"{prefix}_seed_accuracies", [])
    if len(runs) < 2:
        return ""
    return f", mean of {len(runs)} runs with their own seeds ({', '.join(f'{100 * r:.1f}%' for r in runs)})"


def _gate(m: dict, key: str) -> str:
    """The gate of `key` and whether `m` meets it, for the table: "gate >= 0.5: pass"."""
    direction, threshold = GATES[key]
    shown = f"{100 * threshold:.0f}%" if key in PERCENT_GATES else f"{threshold:g}"
    return f"gate {direction} {shown}: {'pass' if passes(m, key) else 'FAIL'}"


def format_table(m: dict) -> str:
    """The metrics dict as a markdown table (the app's portraits first, then the model's own
    outputs), followed by the per-colour readings and the notes."""
    return "\n".join(["| metric | value |", "|---|---|", *_app_rows(m), *_model_rows(m)]) + _notes(m)


def _app_rows(m: dict) -> list[str]:
    """Table rows of the app's portraits: sharpness ratio and the two-sample test at 128 px."""
    lines = []
    if "app_sharpness_ratio" in m:
        size = m["app_size"]
        lines.append(f"| the app's portraits (TranslationPipeline at its default controls, the largest face, at {size} px): "
                     f"test selfies with a face found | {m['app_selfies_detected']} of {m['app_selfies_n']} |")
        lines.append(f"| sharpness ratio of those portraits vs {m['app_reference_n']} real anime faces at {size} px "
                     f"({_gate(m, 'app_sharpness_ratio')}), +- standard error over the portraits "
                     f"| {m['app_sharpness_ratio']:.3f} +- {m['app_sharpness_ratio_stderr']:.3f} |")
        lines.append(f"| sharpness ratio of the app's portraits of {m['app_photos_faces']} faces in {m['app_photos_n']} "
                     f"real photos | {m['app_sharpness_ratio_photos']:.3f} +- {m['app_sharpness_ratio_photos_stderr']:.3f} |")
        calibration = [m["sharpness_ratio_anime_halves"], *(m[f"sharpness_ratio_anime_{side}px"] for side in SHARPNESS_BLURS)]
        lines.append(f"| sharpness ratio calibration: other real anime (1 = as sharp) / real anime taken to "
                     f"{' / '.join(f'{side} px' for side in SHARPNESS_BLURS)} and back "
                     f"| {' / '.join(f'{v:.3f}' for v in calibration)} |")
    if "app_two_sample_n_test" in m:
        n_train, n_test = m["app_two_sample_n_train"], m["app_two_sample_n_test"]
        lines.append(f"| two-sample test at {m['app_two_sample_resolution']} px: the app's portraits of test selfies vs real "
                     f"anime, trained on {n_train[0]} + {n_train[1]} for {m['app_two_sample_steps']} steps, "
                     f"{n_test[0]} + {n_test[1]} held out (50% = indistinguishable; {_gate(m, 'app_two_sample_accuracy')})"
                     f"{_seeds(m)} | {_two_sample(m, 'app_two_sample')} |")
        if "app_two_sample_real_accuracy" in m:
            lines.append(f"| the same test on real anime vs real anime / on real anime taken to {TWO_SAMPLE_BLUR} px and back "
                         f"vs real anime | {_two_sample(m, 'app_two_sample_real')} / "
                         f"{_two_sample(m, f'app_two_sample_real_{TWO_SAMPLE_BLUR}px')} |")
        if f"app_two_sample_real_{TWO_SAMPLE_BLUR}px_upscaler_accuracy" in m:
            lines.append(f"| the same test on real anime taken to {TWO_SAMPLE_BLUR} px and back up through the anime "
                         f"upscaler, as the app shows portraits, vs real anime "
                         f"| {_two_sample(m, f'app_two_sample_real_{TWO_SAMPLE_BLUR}px_upscaler')} |")
        if "app_two_sample_anime_colours_accuracy" in m:
            lines.append("| the same test on the app's portraits asked for hair and eye colours drawn from real anime "
                         f"tags (not its defaults) | {_two_sample(m, 'app_two_sample_anime_colours')} |")
        if "app_two_sample_anime_sets_accuracy" in m:
            a, b = m["app_two_sample_anime_sets"]
            lines.append(f"| the same test on real anime of one data set vs another ({a} vs {b}, "
                         f"{m['app_two_sample_anime_sets_n_test'][0]} + {m['app_two_sample_anime_sets_n_test'][1]} held out"
                         f"{_seeds(m, 'app_two_sample_anime_sets')}) | {_two_sample(m, 'app_two_sample_anime_sets')} |")
    elif "app_two_sample_skipped" in m:
        lines.append(f"| two-sample test at {APP_SIZE} px ({_gate(m, 'app_two_sample_accuracy')}) "
                     f"| not run: {m['app_two_sample_skipped']} |")
    return lines


def _model_rows(m: dict) -> list[str]:
    """Table rows of the model's own outputs: two-sample test, FDs, fixed pattern, colour control,
    input retrieval, feature spread and reconstruction."""
    lines = []
    if "two_sample_accuracy" in m:
        lines.append(f"| two-sample test of the model's translations at {m['two_sample_resolution']} px: held-out accuracy "
                     f"telling them from real anime, {m['two_sample_n_test'][0]} + {m['two_sample_n_test'][1]} images, "
                     f"{m['two_sample_steps']} steps | {_two_sample(m, 'two_sample')} |")
    if "indep_fd" in m:
        lines.append(f"| independent FD (featnet-eval) translated selfies vs anime | {m['indep_fd']:.2f} |")
        lines.append(f"| independent FD floor (real anime) / ceiling (raw selfies) "
                     f"| {m['indep_fd_floor']:.2f} / {m['indep_fd_ceiling']:.2f} |")
        lines.append(f"| independent FD fraction floor->ceiling ({_gate(m, 'indep_fd_fraction')}) "
                     f"| {m['indep_fd_fraction']:.3f} |")
    lines.append(f"| fixed-pattern share of the translations ({_gate(m, 'fixed_pattern_share')}); real anime, selfies "
                 f"| {m['fixed_pattern_share']:.3f}; {m['fixed_pattern_share_anime']:.3f}, "
                 f"{m['fixed_pattern_share_selfies']:.3f} |")
    for group in ("hair", "eye"):
        n_all, confirmed, key = len(m[f"{group}_per_colour"]), m[f"{group}_confirmed"], f"{group}_accuracy_confirmed"
        lines.append(f"| {group} colour control, the {len(confirmed)} of {n_all} colours tagger-eval confirms on "
                     f"real anime ({_gate(m, key) if key in GATES else 'reported'}), +- standard error over the selfies "
                     f"| {_pct_se(m, key)} |")
        beside = ""
        if key in GATES:
            reference = GATES[key][1]
            beside = f"; {'meets' if m[f'{group}_accuracy'] >= reference else 'under'} {100 * reference:.0f}%"
        lines.append(f"| {group} colour control, all {n_all} colours (reported{beside}) | {_pct_se(m, f'{group}_accuracy')} |")
    if "eye_accuracy_second" in m:
        lines.append(f"| hair / eye colour control read by tagger-eval-residual (another architecture), all colours "
                     f"| {_pct_se(m, 'hair_accuracy', '_second')} / {_pct_se(m, 'eye_accuracy', '_second')} |")
        lines.append(f"| the same over the {len(m['hair_confirmed_second'])} hair / {len(m['eye_confirmed_second'])} eye "
                     f"colours it confirms on real anime | {_pct_se(m, 'hair_accuracy_confirmed', '_second')} / "
                     f"{_pct_se(m, 'eye_accuracy_confirmed', '_second')} |")
    lines.append(f"| input retrieval top-1 from the output's grey layout, chance {100 * m['retrieval_chance_top1']:.1f}% "
                 f"({_gate(m, 'retrieval_top1')}) | {100 * m['retrieval_top1']:.1f}% |")
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
    if "reverse_n" in m:
        lines += _reverse_rows(m)
    lines.append(f"| reconstruction L1, human | {m['recon_l1_human']:.4f} |")
    lines.append(f"| reconstruction L1, anime | {m['recon_l1_anime']:.4f} |")
    return lines


def _reverse_rows(m: dict) -> list[str]:
    """Table rows of the anime -> human direction (reported, not gated)."""
    lines = []
    if "reverse_two_sample_accuracy" in m:
        lines.append(f"| anime -> human: two-sample test telling the portraits from the test selfies, "
                     f"{m['reverse_n']} anime faces | {_two_sample(m, 'reverse_two_sample')} |")
        lines.append(f"| its calibration: the raw anime faces vs the test selfies "
                     f"| {_two_sample(m, 'reverse_two_sample_raw')} |")
    lines.append(f"| anime -> human: fixed-pattern share; selfies | {m['reverse_fixed_pattern_share']:.3f}; "
                 f"{m['fixed_pattern_share_selfies']:.3f} |")
    lines.append(f"| anime -> human: input retrieval top-1, chance {100 * m['reverse_retrieval_chance_top1']:.1f}% "
                 f"| {100 * m['reverse_retrieval_top1']:.1f}% |")
    return lines


def _notes(m: dict) -> str:
    """The lines under the table: per-colour readings, what the judges confirm, the pipeline's notes
    and the photos the app returns no portrait for."""
    per = ", ".join(f"{k} {100 * v:.0f}%" for k, v in m["hair_per_colour"].items())
    per_eye = ", ".join(f"{k} {100 * v:.0f}%" for k, v in m["eye_per_colour"].items())
    text = f"\n\nhair per colour: {per}\neye per colour: {per_eye}"
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
    if m.get("app_pipeline_notes"):
        text += "\nthe app's pipeline, as loaded for the evaluation: " + "; ".join(m["app_pipeline_notes"])
    if "app_photos_faces_per_photo" in m:
        text += ("\nthe app's portraits of the real photos, faces per photo: "
                 + ", ".join(f"{k} {v}" for k, v in m["app_photos_faces_per_photo"].items()))
    for which, what in (("selfies", "test selfies"), ("photos", "real photos")):
        if m.get(f"app_{which}_failed"):
            text += f"\n{what} the app returns no portrait for: " + ", ".join(
                f"{k} ({v})" for k, v in m[f"app_{which}_failed"].items())
    return text
