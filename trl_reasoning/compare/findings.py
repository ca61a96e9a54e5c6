"""The paper's findings, each stated from a comparison's numbers: holds, does not hold, or cannot be told
at this scale. A finding is read off the 95% intervals of ``report.summarise`` (two-level bootstrap over
seeds and questions), never off a point estimate alone.

(a) EI >= PPO ~ RCRL at equal samples; (b) more SFT epochs trade pass@k for maj@1 while RL improves
both; (c) RL explores little beyond SFT (pass@k and distinct correct solutions barely move).
"""

from __future__ import annotations

PPO_LIKE = ("ppo_sparse", "ppo", "ppo_dense_orm", "ppo_dense_prm")
RCRL_LIKE = ("rcrl", "rcrl_sparse", "rcrl_dense")
MORE_SFT = ("sft_more",)


def _sign(entry: dict | None) -> str | None:
    """'+' when the interval is above 0, '-' below, '0' when it holds 0; None without an entry."""
    if not entry:
        return None
    low, high = entry["ci95"]
    return "+" if low > 0 else "-" if high < 0 else "0"


def _fmt(entry: dict) -> str:
    return f"{entry['mean']:+.3f} [{entry['ci95'][0]:+.3f}, {entry['ci95'][1]:+.3f}]"


def _present(methods: dict, names: tuple[str, ...]) -> list[str]:
    return [n for n in names if n in methods]


def finding_a(results: dict) -> str:
    """EI >= PPO ~ RCRL: each PPO and RCRL method's maj@1 gap to EI."""
    methods, reference = results["methods"], results.get("reference")
    rivals = _present(methods, PPO_LIKE + RCRL_LIKE)
    if reference != "ei" or not rivals:
        return "(a) EI >= PPO ~ RCRL: cannot be told (the comparison has no EI reference or no PPO/RCRL row)."
    gaps = {n: methods[n]["gap_to_reference"]["maj@1"] for n in rivals}
    below = [n for n, g in gaps.items() if _sign(g) == "-"]
    above = [n for n, g in gaps.items() if _sign(g) == "+"]
    verdict = ("does not hold" if above else "holds" if len(below) == len(gaps)
               else "holds where told apart" if below else "cannot be told at this scale")
    detail = "; ".join(f"{n} {_fmt(g)}" for n, g in gaps.items())
    return f"(a) EI >= PPO ~ RCRL: {verdict}. maj@1 gap to EI: {detail}."


def finding_b(results: dict) -> str:
    """More SFT trades pass@k for maj@1, RL improves both."""
    methods, k = results["methods"], results["k"]
    more = _present(methods, MORE_SFT)
    if not more or "ei" not in methods:
        return "(b) more SFT trades pass@k for maj@1, RL improves both: cannot be told (no sft_more/ei row)."
    sft_gain, ei_gain = methods[more[0]]["gain_over_sft"], methods["ei"]["gain_over_sft"]
    signs = {"sft maj": _sign(sft_gain["maj@1"]), "sft pass": _sign(sft_gain[f"pass@{k}"]),
             "ei maj": _sign(ei_gain["maj@1"]), "ei pass": _sign(ei_gain[f"pass@{k}"])}
    holds = signs["sft maj"] == "+" and signs["sft pass"] == "-" and signs["ei maj"] == "+" \
        and signs["ei pass"] != "-"
    against = (signs["sft maj"] == "-" or signs["sft pass"] == "+"
               or "-" in (signs["ei maj"], signs["ei pass"]))
    verdict = "holds" if holds else "does not hold" if against else "cannot be told at this scale"
    return (f"(b) more SFT epochs trade pass@{k} for maj@1 while RL improves both: {verdict}. "
            f"{more[0]}: maj@1 {_fmt(sft_gain['maj@1'])}, pass@{k} {_fmt(sft_gain[f'pass@{k}'])}; "
            f"ei: maj@1 {_fmt(ei_gain['maj@1'])}, pass@{k} {_fmt(ei_gain[f'pass@{k}'])}.")


def finding_c(results: dict) -> str:
    """Little exploration beyond SFT: pass@k gains of the RL methods, and distinct correct solutions."""
    methods, k = results["methods"], results["k"]
    rl = [n for n in methods if n != results["baseline"] and n not in MORE_SFT and " " not in n]
    if not rl:
        return "(c) little exploration beyond SFT: cannot be told (no RL row)."
    gains = {n: methods[n]["gain_over_sft"][f"pass@{k}"] for n in rl}
    beyond = [n for n, g in gains.items() if _sign(g) == "+"]
    verdict = "holds" if not beyond else f"does not hold for {', '.join(beyond)}"
    sft_distinct = methods[results["baseline"]]["metrics"].get("distinct_correct", {}).get("mean")
    distinct = ", ".join(f"{n} {methods[n]['metrics']['distinct_correct']['mean']:.2f}" for n in rl
                         if "distinct_correct" in methods[n]["metrics"])
    return (f"(c) little exploration beyond SFT: {verdict}. pass@{k} gain over SFT: "
            + "; ".join(f"{n} {_fmt(g)}" for n, g in gains.items())
            + (f". Distinct correct solutions per question: sft {sft_distinct:.2f}, {distinct}."
               if sft_distinct is not None else "."))


def seeds_needed(entry: dict, seeds: int) -> int | None:
    """Seeds a gain of this measured size would need for its interval to exclude 0, at the measured spread
    (the interval narrows as 1 / sqrt(seeds) when questions per seed stay fixed); None for a zero mean."""
    half = (entry["ci95"][1] - entry["ci95"][0]) / 2
    if abs(entry["mean"]) < 1e-9:  # equal counts of correct answers, up to float sums
        return None
    return max(seeds, int(seeds * (half / abs(entry["mean"])) ** 2) + 1)


def budget_note(results: dict) -> str:
    """When no method's maj@1 gain over SFT excludes 0: what it would take, from the measured spread."""
    methods, seeds = results["methods"], len(results["seeds"])
    gains = {n: m["gain_over_sft"]["maj@1"] for n, m in methods.items() if "gain_over_sft" in m}
    if not gains or any(_sign(g) != "0" for g in gains.values()):
        return ""
    needs = {n: seeds_needed(g, seeds) for n, g in gains.items()}
    sized = "; ".join(f"{n} ~{v} seeds" for n, v in needs.items() if v is not None)
    zero = ", ".join(n for n, v in needs.items() if v is None)
    text = f"No method's maj@1 gain over SFT excludes 0 with {seeds} seed(s)."
    if sized:
        text += f" At the measured sizes and spread, telling each from 0 would take: {sized}."
    if zero:  # an empty list of seeds would read as a missing number
        text += f" {zero}: a measured gain of exactly 0, from which no number of seeds follows."
    return text


def findings(results: dict) -> list[str]:
    """The three findings as lines of text (and the budget note when nothing is told apart), from
    ``results`` (``report.summarise``)."""
    lines = [finding_a(results), finding_b(results), finding_c(results)]
    note = budget_note(results)
    return lines + ([note] if note else [])
