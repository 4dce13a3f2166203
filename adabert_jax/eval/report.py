"""The run's report: results.json and report.md, with the pictures the stages drew."""

from __future__ import annotations

import json
import os

from adabert_jax import artefacts, io_utils, plots
from adabert_jax.data.tasks import Task
from adabert_jax.train import progress


def build_report(task: Task, workdir: str, teacher: dict, knowledge_summary: dict,
                 search: dict, derived: dict, student: dict, bench: dict,
                 baselines: dict[str, dict] | None = None,
                 comparisons: dict[str, dict] | None = None,
                 data: dict | None = None) -> dict:
  """Writes <workdir>/results.json, report.md and accuracy_latency.png; returns results.
  comparisons: the student against other models on dev (stages.dev_comparisons).
  data: where each split came from and its digest (data.pipeline.data_record)."""
  rows = {m["name"]: m for m in bench["models"]}
  student_row = bench["models"][0]
  teacher_row = bench["models"][1]
  bert_row = bench["models"][2] if len(bench["models"]) > 2 else None
  results = {
      "task": task.name, "metric": task.metric, "labels": list(task.labels),
      "data": data,
      "teacher": {"dev": teacher["dev"], "params": teacher_row["params"],
                  "model_dir": teacher["model_dir"]},
      "student": {"dev": student["dev"], "params": student_row["params"],
                  "dev_by_epoch": dev_by_epoch(workdir, "student"),
                  "genotype": student["genotype"], "init": student.get("name"),
                  "epochs": student.get("epochs"),
                  "train_examples": student.get("train_examples")},
      "search": {"genotype": derived["genotype"], "derive_method": derived["method"],
                 "alpha_genotype": search["genotype"], "depth_probs": search["depth_probs"],
                 "wall_time_s": search["wall_time_s_this_run"],
                 "examples_per_s": search["examples_per_s"],
                 "derive_wall_time_s": derived["wall_time_s"]},
      "speed": {"batch_size": bench["batch_size"], "max_len": bench["max_len"],
                "student_ms": student_row["latency_ms"],
                "teacher_ms": teacher_row["latency_ms"],
                "bert_base_ms": bert_row["latency_ms"] if bert_row else None,
                "speedup_vs_teacher": student_row["speedup_vs"][teacher_row["name"]],
                "speedup_vs_bert_base": (student_row["speedup_vs"][bert_row["name"]]
                                         if bert_row else None),
                "size_ratio_vs_teacher": student_row["size_ratio_vs"][teacher_row["name"]],
                "size_ratio_vs_bert_base": (student_row["size_ratio_vs"][bert_row["name"]]
                                            if bert_row else None),
                "flops": {name: r["flops"] for name, r in rows.items()}},
      "baselines": {name: {"dev": b["dev"], "params": b.get("params_exported"),
                           "genotype": b.get("genotype"),
                           "dev_by_epoch": dev_by_epoch(workdir, name)}
                    for name, b in (baselines or {}).items()},
      "comparisons": comparisons or {},
  }
  points = [{"name": r["name"], "latency_ms": r["latency_ms"], "score": score,
             "params": r["params"]} for r, score in zip(bench["models"], _scores(results))]
  plots.plot_accuracy_latency(points, task.metric,
                              os.path.join(workdir, "accuracy_latency.png"))
  io_utils.save_json_atomic(os.path.join(workdir, artefacts.RESULTS_FILE), results)
  io_utils.save_text_atomic(os.path.join(workdir, artefacts.REPORT_FILE),
                            render_markdown(task, results, bench, knowledge_summary, derived))
  return results


def dev_by_epoch(workdir: str, name: str) -> list[float]:
  """A student's dev score at each epoch end, from its training log. The student keeps the
  best of them, a choice made on dev; the last is the one no choice touched."""
  log = os.path.join(artefacts.student_dir(workdir, name), artefacts.LOG_FILE)
  return [r["dev"]["score"] for r in progress.read_records(log) if "dev" in r]


def _epoch_ends(scores: list[float] | None) -> str:
  return ", ".join(f"{s:.2f}" for s in scores) if scores else "-"


def _scores(results: dict) -> list[float | None]:
  """The dev scores of the benchmarked models (student, teacher, BERT-base) as they are now:
  a benchmark is reused when only the student's weights changed (speed does not depend on
  them), so the scores it recorded may be older."""
  return [results["student"]["dev"]["score"], results["teacher"]["dev"]["score"], None]


def results_table(task: Task, results: dict, bench: dict) -> str:
  lines = [f"| model | params | dev {task.metric} | dev at the epoch ends | "
           f"ms / batch {bench['batch_size']} | speedup vs BERT-base | speedup vs teacher |",
           "|---|---|---|---|---|---|---|"]
  teacher_name = bench["models"][1]["name"]
  bert_name = bench["models"][2]["name"] if len(bench["models"]) > 2 else None
  student_epochs = results["student"].get("dev_by_epoch")
  for i, (m, metric) in enumerate(zip(bench["models"], _scores(results))):
    score = "-" if metric is None else f"{metric:.2f}"
    epochs = _epoch_ends(student_epochs) if i == 0 else "-"
    vs_bert = f"{m['speedup_vs'][bert_name]:.1f}x" if bert_name else "-"
    lines.append(f"| {m['name']} | {m['params'] / 1e6:.2f}M | {score} | {epochs} | "
                 f"{m['latency_ms']:.1f} | {vs_bert} | {m['speedup_vs'][teacher_name]:.1f}x |")
  for name, b in results["baselines"].items():
    lines.append(f"| baseline: {name} | {(b['params'] or 0) / 1e6:.2f}M | "
                 f"{b['dev']['score']:.2f} | {_epoch_ends(b.get('dev_by_epoch'))} | "
                 "- | - | - |")
  return "\n".join(lines)


def _serving_lines(bench: dict) -> list[str]:
  from adabert_jax.eval.benchmark import format_serving

  if not bench.get("serving"):
    return []
  return ["Serving (model call only, tokenization excluded; full-length inputs, and dev "
          "examples cut to their length bucket):", "",
          format_serving(bench["serving"], bench["batch_size"]), ""]


def _data_lines(task: Task, data: dict | None) -> list[str]:
  if not data:
    return []
  files = "; ".join(f"{split} `{where}` ({data['digests'][split]})"
                    for split, where in data["files"].items())
  return [f"Data: {files}. Classes: {', '.join(task.labels)}.", ""]


def render_markdown(task: Task, results: dict, bench: dict, knowledge_summary: dict,
                    derived: dict) -> str:
  from adabert_jax.teacher.probes import format_probe_table

  geno = results["search"]["genotype"]
  probe_rows = knowledge_summary["probes"][task.main_dev_split]
  return "\n".join([
      f"# AdaBERT run: {task.name}",
      "",
      *_data_lines(task, results.get("data")),
      results_table(task, results, bench),
      "",
      f"Speed: batch {bench['batch_size']}, max_len {bench['max_len']}, median of "
      f"{bench['repeats']} jitted runs on {bench['backend']} ({bench['device']}).",
      "",
      "Each student and baseline keeps its epoch with the best dev score, so its dev score "
      "is chosen on dev; the last epoch end is the score no such choice touched.",
      "",
      *_serving_lines(bench),
      _training_line(results["student"]),
      "",
      *_comparison_lines(results["comparisons"]),
      f"## Searched architecture (K = {geno['depth']})",
      "",
      "![cell](derive/cell.png)",
      "",
      "```json", json.dumps(geno), "```",
      "",
      *_input_mode_lines(geno.get("input_mode", "single")),
      *_derive_lines(derived),
      "Architecture weights over the search:",
      "",
      "![alpha](search/alpha.png)",
      "",
      "## Accuracy against latency",
      "",
      "![accuracy vs latency](accuracy_latency.png)",
      "",
      "## Teacher knowledge probes (dev)",
      "",
      format_probe_table(probe_rows),
      "",
      "![probes](knowledge/probes.png)",
      "",
  ]) + "\n"


_INPUT_MODE_TEXT = {
    "siamese": "each sentence of a pair is encoded alone by the same cells; the head reads "
               "[u, v, |u - v|, u * v] of the two pooled vectors",
    "attend": "each sentence of a pair is encoded alone by the same cells and every layer "
              "softly aligns each token with the other sentence's tokens; the head reads "
              "[u, v, |u - v|, u * v] of the two pooled vectors and each sentence's mean of "
              "x * x~ and |x - x~| (how well its tokens are matched)",
    "aligned": "the authors' pair input: sentence A and sentence B, each from position 0, are "
               "the first cell's two input nodes",
    "masked": "the concatenated pair masked into its two segments (additive in the two "
              "sentences; a reference, not a model to use)",
}


def _input_mode_lines(mode: str) -> list[str]:
  if mode == "single":
    return []
  return [f"Pair input (`search.pair_mode={mode}`): {_INPUT_MODE_TEXT[mode]}.", ""]


def _derive_lines(derived: dict) -> list[str]:
  from adabert_jax.nas.derive import format_candidates, format_proxy, format_uniform_grid

  if derived["method"] == "alpha":
    return ["Derived from alpha (the paper's rule).", ""]
  proxy_lines = []
  if derived["method"] == "proxy":
    proxy_lines = [
        f"Derived by the proxy: the measured choice below and {len(derived['proxy']) - 1} "
        "random cells of its depth, each trained on its own from scratch and scored on the "
        "held-out examples; the lowest cross-entropy (bold) was kept:", "",
        format_proxy(derived), ""]
    derived = {**derived, "genotype": derived["measured_genotype"]}  # the measured rule's
  chosen = derived["chosen"]
  return proxy_lines + [
      f"{'The measured choice' if proxy_lines else 'Derived'} from the supernet's measured "
      f"loss on {derived['heldout_examples']:,} held-out "
      f"training examples plus {derived['beta']} x L_E: held-out loss {chosen['loss']:.4f}, "
      f"accuracy {chosen['accuracy']:.2f}, L_E {chosen['efficiency']:.3f} "
      f"({len(derived['evaluated'])} architectures measured).{_tie_sentence(derived)} "
      f"Alpha's rule gave `{json.dumps(derived['alpha_genotype'])}`. The best measured:",
      "", format_candidates(derived), "",
      "What the supernet ranks, op by op: held-out loss / accuracy (%) with one op on every "
      "edge, rows by their best loss:", "", format_uniform_grid(derived), ""]


def _no_signal_meaning(signal: dict) -> str:
  # Testing the best candidate, a failure means no candidate stood out; testing the kept
  # cell, others may have, but not the one the rule would ship.
  if signal.get("tested") == "kept":
    return "the cell the rule would keep cannot be told from the majority class"
  return "the supernet ranked nothing"


def _tie_sentence(derived: dict) -> str:
  from adabert_jax.nas.derive import signal_figures, signal_subject

  signal = derived.get("signal", {})
  if signal.get("fallback"):
    return (f" The held-out accuracy of {signal_subject(signal)} did not beat the "
            f"majority class significantly ({signal_figures(signal)}, level "
            f"{signal['level']:g} with Bonferroni's "
            f"correction): {_no_signal_meaning(signal)}, so `derive.no_signal=plain_cnn` "
            "took the plain CNN at alpha's depth.")
  if not derived.get("tie_se"):
    return ""
  if derived["genotype"] == derived["best_objective_genotype"]:
    return (f" No cheaper candidate was within {derived['tie_se']:g} paired standard errors "
            "of the best J (the one-SE rule), so the best J was kept.")
  best = next(r for r in derived["evaluated"]
              if r["genotype"] == derived["best_objective_genotype"])
  chosen = derived["chosen"]
  return (f" The one-SE rule took this genotype, the cheapest within {derived['tie_se']:g} "
          f"paired standard errors of the best J (J +{chosen['objective'] - best['objective']:.4f}"
          f", paired SE {chosen['paired_se']:.4f}, L_E {chosen['efficiency']:.3f} against "
          f"{best['efficiency']:.3f}), over the best-J genotype "
          f"`{json.dumps(derived['best_objective_genotype'])}`.")


def _comparison_lines(comparisons: dict[str, dict]) -> list[str]:
  from adabert_jax.eval.compare import format_comparisons

  if not comparisons:
    return []
  return [
      "## Are the differences real? (dev accuracy, paired)",
      "",
      "The student against each model on the same dev examples: the accuracy difference "
      "with a paired bootstrap 95% interval, and McNemar's exact test on the examples only "
      "one of the two gets right (p < 0.05: unlikely to be chance); the last column is the "
      "smallest difference that test would call significant with as many examples only one "
      "of the two gets right.",
      "",
      format_comparisons("student", list(comparisons.items())),
      ""]


def _training_line(student: dict) -> str:
  if not student.get("train_examples"):  # a student trained before this was recorded
    return ""
  return (f"Students: {student['epochs']} epochs over {student['train_examples']:,} training "
          "examples (the task's, plus teacher-labelled augmented copies when "
          "augment.copies > 0).")
