"""The real-model page's PPO trials: PPO from the comparison's SFT start with one thing changed, read by
its rollout reward (the logged reward's trend, and where the trial logged its completions, the reward
against the start's pass rate on the same questions: ``trl_reasoning.rollout_logs``); and the table cells
of a logged reward trend, which the page's comparison sections share."""

from __future__ import annotations

import json
from pathlib import Path

# Runs copied before stage records held the machine (8f17c27) ran on the 2-core AMD EPYC, one core each,
# other runs beside them: the pages say so, marked as not recorded
EARLIER_CPU = "AMD EPYC (avx2)"  # as reporting.cpu_text writes it (and the PPO profile's record)
EARLIER_WORDS = "AMD EPYC (AVX2, no AVX-512)"  # as reporting.machine_label writes it
EARLIER_WHERE = f"the 2-core {EARLIER_WORDS}, one core, other runs beside it (not recorded)"


def cpu_of(record: dict) -> str:
    """A stage record's CPU and its matrix instruction sets (``reporting.cpu_text``, as the PPO profile
    names its CPU): the figures of one recipe and seed depend on these, not on the cores used; EARLIER_CPU
    for a record without one."""
    from trl_reasoning.reporting import cpu_text

    return cpu_text(record["machine"]) if "machine" in record else EARLIER_CPU


def cpu_words(record: dict) -> str:
    """``cpu_of`` in words (the widest matrix instruction set only), as ``where`` without the cores."""
    from trl_reasoning.reporting import machine_label

    if "machine" not in record:
        return EARLIER_WORDS
    info = {key: value for key, value in record["machine"].items() if key in ("cpu", "matrix_extensions")}
    return machine_label(info) or "a CPU whose model was not recorded"


def where(record: dict) -> str:
    """Where a stage ran, in words, from its record (``trl_reasoning.reporting.machine_label``)."""
    from trl_reasoning.reporting import machine_label

    if "machine" not in record:
        return EARLIER_WHERE
    return machine_label(record["machine"]) or "a CPU whose model was not recorded"


def trend_cells(logged: list[dict]) -> str:
    """Table cells of a logged reward curve (a copied rewards file or a trainer's whole log): points,
    first and last reward, the slope per 100 steps with its interval, and the interval's half-width
    times the logged steps (the fitted line's rise that the interval needs to exclude zero)."""
    from trl_reasoning.metrics import logged_values, reward_trend

    trend = reward_trend(logged)
    if trend is None:
        return f"{len(logged_values(logged))} | | | too few points | "
    if trend["ci95"] is None:
        return (f"{trend['points']} | {trend['first']:.3f} | {trend['last']:.3f} | "
                f"{trend['slope']:+.3f} too few points for an interval | ")
    low, high = trend["ci95"]
    span = (trend["last_step"] - trend["first_step"]) / trend["slope_per_steps"]
    return (f"{trend['points']} | {trend['first']:.3f} | {trend['last']:.3f} | {trend['slope']:+.3f} "
            f"[{low:+.3f}, {high:+.3f}] | {(high - low) / 2 * span:.3f}")


def reward_curve(logged: list[dict]) -> tuple[list, list]:
    """A logged reward curve (a copied rewards file or a trainer's whole log) as the figure's (steps,
    rewards)."""
    from trl_reasoning.metrics import logged_values

    pairs = logged_values(logged)
    return [step for step, _ in pairs], [reward for _, reward in pairs]


PPO_TRIALS = "smollm2_ppo_trials"  # docs/results/smollm2_ppo_trials/NAME/: the trial's trainer_state.json and
# its ppo stage_complete.json, copied from the command's output_dir/ppo/, and trial.json: {"change": what
# differs from the comparison's PPO, "command": the command that ran it, "commit": the code it ran, and
# optionally "control": the control trial it is paired with, where not CONTROL (a trial from another SFT
# start or on another CPU has its own control from that start, on that CPU; a control names itself)}; a trial
# that logged its completions also has rollouts.json (its rollouts, rollout_logs.read_rollouts) and
# start_pass_rates.json ({"source": the start's samples, "rates": {question id: pass rate}}): copy_trial
CONTROL = "pool32_grpo"  # the trial the others are paired with, question by question at equal rollouts


def ppo_trials_section(results: Path) -> str:
    """PPO from the comparison's SFT start with one thing changed, read by the rollout reward alone
    (train questions; no held-out evaluation, so no setting is chosen on the test split): each trial's
    slope, its KL to the start and its value model's explained variance; or nothing."""
    from trl_reasoning.reporting import plot_curves

    rows, curves, commands = [], {}, []
    for folder in sorted((results / PPO_TRIALS).glob("*/")):
        files = (folder / "trainer_state.json", folder / "stage_complete.json", folder / "trial.json")
        if not all(f.exists() for f in files):
            continue  # a trial still running
        history = json.loads(files[0].read_text())["log_history"]
        record, trial = (json.loads(f.read_text()) for f in files[1:])
        curves[folder.name] = reward_curve(history)  # the figure's legend: the trial's short name
        rows.append(f"| {folder.name} | {trial['change']} | {where(record)} | {record['steps']} | "
                    f"{record['wall_seconds']:.0f} | {trend_cells(history)} | {_value_cells(history)} |")
        commands.append(f"- {folder.name}, {trial['change']} (at {trial['commit']}):\n\n  ```bash\n"
                        f"  {trial['command']}\n  ```\n")
    if not rows:
        return ""
    figure = plot_curves(results / PPO_TRIALS / "reward_trend.png", curves, "optimizer step",
                         "mean rollout reward (logged)", "PPO's rollout reward, one change each")
    return ("## PPO trials: the rollout reward alone\n\nPPO (sparse) with the comparison's recipe, from "
            "its SFT start, with one thing changed, for the recipe's wall-time budget, on train questions "
            "only and without a held-out evaluation, so that a setting is chosen by its training reward "
            "and never by the test split. Without the comparison's training-time evaluations a trial fits "
            "a few more steps in the same time, and another machine more or fewer (the machine column; a "
            "trial on another machine starts from the same SFT recipe retrained there: its command's "
            "--model). KL: the last logged KL to the SFT start per completion; "
            "explained variance: the value model's (below 0, its V_t predicts the returns worse than "
            "their mean would, and GAE's advantages carry its error).\n\n"
            f"![PPO trials]({PPO_TRIALS}/{figure.name})\n\n"
            "| trial | change | machine | steps | stage wall s | logged points | first | last | slope per "
            "100 steps [95%] | rise needed over the logged steps | KL, last | explained variance: mean, "
            "first, last |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n" + "\n".join(rows) + "\n\n"
            + _against_start(results) + "\n".join(commands))


def _against_start(results: Path) -> str:
    """The trials that logged their completions: each rollout's reward against the SFT start's pass rate
    on the same questions (``rollout_logs.adjusted_reward_trend``), as a figure and a table; or nothing."""
    from trl_reasoning.reporting import plot_curves
    from trl_reasoning.rollout_logs import adjusted_reward_trend

    rows, curves, sources = [], {}, set()
    controls = {}  # control name -> (its rollouts, its CPU), once it finished
    for folder in sorted((results / PPO_TRIALS).glob("*/")):
        files = [folder / name for name in ("rollouts.json", "start_pass_rates.json", "trial.json",
                                            "stage_complete.json")]
        if not all(f.exists() for f in files):
            continue
        rollouts = _rollouts(folder)
        start = json.loads(files[1].read_text())
        trend = adjusted_reward_trend(rollouts, start["rates"], start["samples"])
        sources.add(start["source"])
        drawn = [q for r in rollouts for q in sorted(set(r.questions))]
        again = trend["first_to_last_draw"]
        name = json.loads(files[2].read_text()).get("control", CONTROL)
        paired = _against_control(results / PPO_TRIALS, folder.name, cpu_of(json.loads(files[3].read_text())),
                                  rollouts, name, controls)
        curves[folder.name] = (trend["steps"], trend["adjusted"])
        rows.append(f"| {folder.name} | {trend['rollouts']} | {len(set(drawn))} | "
                    f"{len(drawn) / len(set(drawn)):.1f} | "
                    f"{sum(start['rates'][q] for q in drawn) / len(drawn):.3f} | "
                    f"{_cell(trend['mean_adjusted'])} | {_cell(trend['slope'])} | "
                    f"{_cell(trend['raw_slope'])} | {_cell(again) if again else ''} | "
                    + (f"{_cell(paired)}, {paired['rollouts']} rollouts, against {name} |"
                       if isinstance(paired, dict) else f"{paired} |" if paired else "|"))
    if not rows:
        return ""
    figure = plot_curves(results / PPO_TRIALS / "reward_vs_start.png", curves, "optimizer step",
                         "rollout reward - start's pass rate", "PPO's rollouts against the SFT start")
    return ("### Against the start, question by question\n\nEach completion's reward minus the SFT start's "
            "pass rate on its own question (the start's samples: " + "; ".join(sorted(sources)) + "), "
            "averaged per rollout: a batch's luck in drawing easy or hard questions cancels, and what is "
            "left moves only when the policy does (`trl_reasoning.rollout_logs`). The mean's 95% interval "
            "adds the start's own estimation error (a few samples per question) to the rollouts' spread; "
            "slopes per 100 steps as above. Where the trial drew questions more than once: each "
            "question's last draw minus its first, paired by question (95% bootstrap over questions), "
            f"which needs no start at all; and that gain minus its control's (TRL's GRPO from the same start "
            f"on the same CPU: {CONTROL} unless the cell names another) on the same questions, "
            "both cut to the rollouts the shorter run drew (paired by question, 95% bootstrap): at equal "
            "rollouts, does the trial learn more or less than the control?\n\n"
            f"![against the start]({PPO_TRIALS}/{figure.name})\n\n"
            "| trial | rollouts | questions | draws per question | start's pass rate on the draws | "
            "reward - start, mean [95%] | its slope per 100 steps [95%] | raw reward's slope [95%] | "
            "last draw - first draw, same questions [95%] | the same, minus its control's [95%] |\n"
            "|---|---|---|---|---|---|---|---|---|---|\n" + "\n".join(rows) + "\n\n")


def _against_control(trials: Path, trial: str, cpu: str, rollouts: list, name: str,
                     controls: dict) -> dict | str:
    """``rollout_logs.first_to_last_against`` of a trial (its name, CPU and rollouts) and its control
    ``name`` (cached in ``controls``), or why there is none: the control itself, not finished, or run on
    another CPU (whose figures differ)."""
    from trl_reasoning.rollout_logs import first_to_last_against

    if trial == name:
        return ""
    if name not in controls:
        record = trials / name / "stage_complete.json"
        controls[name] = ((_rollouts(trials / name), cpu_of(json.loads(record.read_text())))
                          if record.exists() else None)
    if controls[name] is None or controls[name][0] is None:
        return f"{name} not copied or not finished"
    control, control_cpu = controls[name]
    if control_cpu != cpu:
        return f"{name} ran on another CPU"
    return first_to_last_against(rollouts, control)


def _rollouts(folder: Path) -> list | None:
    """A copied trial's rollouts (its rollouts.json), or None where it logged none."""
    from trl_reasoning.rollout_logs import Rollout

    path = folder / "rollouts.json"
    if not path.exists():
        return None
    return [Rollout(r["step"], tuple(r["questions"]), tuple(r["rewards"]))
            for r in json.loads(path.read_text())]


def against_start_table(files: list[Path]) -> str:
    """A comparison's on-policy methods against the SFT start, from the files
    ``benchmarks/rollouts_against_start.py`` wrote (``seed_S/rollouts/METHOD.json`` beside
    ``seed_S/start_pass_rates.json``); or nothing."""
    from trl_reasoning.rollout_logs import Rollout, adjusted_reward_trend

    rows, sources = [], set()
    for path in files:
        start = json.loads((path.parent.parent / "start_pass_rates.json").read_text())
        sources.add(start["source"])
        rollouts = [Rollout.of_mean(r["step"], r["questions"], r["reward"])
                    for r in json.loads(path.read_text())]
        trend = adjusted_reward_trend(rollouts, start["rates"], start["samples"])
        seed = path.parent.parent.name.removeprefix("seed_")
        rows.append(f"| {path.stem} | {seed} | {trend['rollouts']} | {_cell(trend['mean_adjusted'])} | "
                    f"{_cell(trend['slope'])} | {_cell(trend['raw_slope'])} |")
    if not rows:
        return ""
    return ("\nAgainst the SFT start on the same questions: each logged rollout's mean reward minus the "
            "start's mean pass rate on the questions it drew (which questions: rebuilt from TRL's sampler "
            "and the run's training arguments; a value logged after a training-time evaluation averages "
            "two rollouts and is paired with both; the start's rates: its samples in "
            + "; ".join(sorted(sources)) + "), by `python benchmarks/rollouts_against_start.py "
            "recipes/smollm2_svamp_compare.yaml OUTPUT`. The draw's easy and hard batches cancel; what is "
            "left moves only when the policy does. The mean's 95% interval adds the start's own estimation "
            "error to the rollouts' spread.\n\n"
            "| method | seed | rollouts | reward - start, mean [95%] | its slope per 100 steps [95%] | "
            "raw reward's slope on them [95%] |\n|---|---|---|---|---|---|\n" + "\n".join(rows) + "\n")


def _cell(entry: dict) -> str:
    interval = entry.get("ci95")
    return f"{entry['mean']:+.3f}" + (f" [{interval[0]:+.3f}, {interval[1]:+.3f}]" if interval else "")


def copy_trial(output_dir: Path, folder: Path, trial: dict, start_samples: list[Path],
               stage: str = "ppo") -> None:
    """Copy a finished trial (``trl-reasoning train ... --output_dir OUTPUT_DIR``, its ``stage``) into
    ``folder``: its trainer log and stage record, ``trial`` as trial.json, and with ``start_samples``
    (the start's scored samples; their paths go into the page as given, so give them relative to the
    checkout) its logged rollouts and the start's pass rates on their questions."""
    import shutil

    from trl_reasoning.rollout_logs import read_rollouts, start_pass_counts

    stage = output_dir / stage  # a control run of another on-policy stage (grpo) is read the same way
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("trainer_state.json", "stage_complete.json"):
        shutil.copyfile(stage / name, folder / name)
    (folder / "trial.json").write_text(json.dumps(trial, indent=1) + "\n")
    if start_samples:
        rollouts = read_rollouts(stage)
        asked = {q for r in rollouts for q in r.questions}
        counts = start_pass_counts(start_samples)
        (folder / "rollouts.json").write_text(json.dumps(
            [{"step": r.step, "questions": r.questions, "rewards": r.rewards} for r in rollouts]) + "\n")
        (folder / "start_pass_rates.json").write_text(json.dumps(
            {"source": ", ".join(str(p) for p in start_samples),
             "rates": {q: counts[q][0] / counts[q][1] for q in sorted(asked)},
             "samples": {q: counts[q][1] for q in sorted(asked)}}, indent=1) + "\n")


def _value_cells(history: list[dict]) -> str:
    """The last logged KL, and the explained variance's mean, first and last value, as table cells."""
    from trl_reasoning.metrics import logged_values

    kl = [value for _, value in logged_values(history, "ppo/kl")]
    variance = [value for _, value in logged_values(history, "ppo/explained_variance")]
    shown = (f"{sum(variance) / len(variance):+.3f}, {variance[0]:+.3f}, {variance[-1]:+.3f}"
             if variance else "")
    return (f"{kl[-1]:.3f}" if kl else "") + f" | {shown}"


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="Copy a finished PPO trial into docs/results/" + PPO_TRIALS)
    parser.add_argument("name", help="the trial's folder name")
    parser.add_argument("output_dir", type=Path, help="the trial command's --output_dir")
    parser.add_argument("--change", required=True, help="what differs from the comparison's PPO")
    parser.add_argument("--command", required=True, help="the command that ran it")
    parser.add_argument("--commit", required=True, help="the code it ran")
    parser.add_argument("--start-samples", type=Path, nargs="*", default=[],
                        help="the SFT start's scored samples (samples.jsonl with id and correct)")
    parser.add_argument("--stage", default="ppo", help="the stage folder under output_dir (a control: grpo)")
    parser.add_argument("--control", help=f"the control trial it is paired with, where not {CONTROL} (a "
                                          "control names itself)")
    options = parser.parse_args()
    trial = {"change": options.change, "command": options.command, "commit": options.commit}
    copy_trial(options.output_dir, Path(__file__).parent / "results" / PPO_TRIALS / options.name,
               {**trial, "control": options.control} if options.control else trial,
               options.start_samples, options.stage)
