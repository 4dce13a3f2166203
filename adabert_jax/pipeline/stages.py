"""The pipeline's stages, each skipped when its artefact exists and matches the config.

A stage whose artefact was made with another config is refused (one message naming the
differing fields) unless --overwrite is given: a run directory never silently mixes runs.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from typing import Any

import jax
import numpy as np

from adabert_jax import artefacts, io_utils
from adabert_jax.data import batching, pipeline as data_pipeline
from adabert_jax.errors import UserError
from adabert_jax.eval import benchmark, compare
from adabert_jax.nas import derive, genotype as genotype_lib, losses, search
from adabert_jax.pipeline import runner
from adabert_jax.student import export, model, onnx_export, train as student_train
from adabert_jax.teacher import finetune, probes
from adabert_jax.train import checkpoints, distributed, sharding


def ensure_teacher(config, task, splits, workdir, overwrite=False) -> dict:
  data_files = data_pipeline.data_files(config, task)
  fingerprint = finetune.teacher_fingerprint(config, task, data_files)
  runner.record_legacy_data_files(artefacts.teacher_dir(workdir), fingerprint)
  distributed.barrier("recorded the teacher's data")
  return runner.run_stage("teacher", artefacts.teacher_dir(workdir), artefacts.RESULT_FILE,
                   fingerprint, overwrite,
                   lambda: finetune.finetune(config, task, splits, workdir,
                                             data_files=data_files))


def check_run_data(config, task, run_dir: str) -> dict[str, str]:
  """Refuses to score `run_dir`'s models on a task or data its teacher was not made from
  (evaluate, compare); returns the data's fingerprints for the record."""
  data_files = data_pipeline.data_files(config, task)
  path = os.path.join(artefacts.teacher_dir(run_dir), artefacts.CONFIG_FILE)
  if not os.path.isfile(path):
    raise UserError(f"No fine-tuned teacher in {run_dir} (--workdir): nothing to score.")
  made = io_utils.load_json(path)
  if made.get("task") != task.name:
    raise UserError(f"{run_dir} was made for task {made.get('task')!r}, not {task.name!r}: "
                    "pass its --task (and the --config its run used).")
  recorded = made.get("data_files")
  if recorded is None:
    print(f"warning: {run_dir}'s teacher records no data fingerprint (made by an older "
          "version): the data cannot be checked.", file=sys.stderr)
  differ = [s for s in data_files if recorded is not None and recorded.get(s) != data_files[s]]
  if differ:
    raise UserError(f"{run_dir} was made from other data than --glue_dir/--config.data gives "
                    f"(split {', '.join(differ)}: {recorded.get(differ[0])} there, "
                    f"{data_files[differ[0]]} here). Pass the data its run used.")
  return data_files


def ensure_knowledge(config, task, splits, vocab, workdir, teacher_result,
                     overwrite=False) -> dict[str, Any]:
  """Probes + precompute (reused when they match the teacher); returns the knowledge of
  train and the main dev split, the embedding tables and the probes summary."""
  kdir = artefacts.knowledge_dir(workdir)
  fingerprint = {"teacher_checkpoint_id": teacher_result["checkpoint_id"],
                 "vocab_hash": vocab.hash, "max_len": config.data.max_len,
                 "probes": config.probes.to_dict(), "seed": config.seed}

  def compute():
    teacher, params, _ = finetune.load_finetuned(workdir, config.teacher.checkpoint)
    summary = probes.run_precompute(config, task, splits, vocab.hash, teacher, params,
                                    teacher_result, workdir)
    io_utils.save_json_atomic(os.path.join(kdir, artefacts.RESULT_FILE), summary)
    return summary

  summary = runner.run_stage("precompute", kdir, artefacts.RESULT_FILE, fingerprint, overwrite,
                             compute)
  knowledge = {}
  for split in ("train", task.main_dev_split):
    meta = probes.knowledge_meta(teacher_result, vocab.hash, config.data.max_len, split,
                                 len(splits[split]["label"]))
    knowledge[split] = probes.load_knowledge(os.path.join(kdir, f"{split}.npz"), meta)
  emb_tables = io_utils.load_npz(os.path.join(kdir, "embeddings.npz"))
  return {"knowledge": knowledge, "emb_tables": emb_tables, "summary": summary}


def ensure_augmented(config, splits, vocab, workdir, teacher_result, knowledge,
                     overwrite=False) -> dict[str, np.ndarray] | None:
  """The augmented training copies with their knowledge (config.augment.copies > 0), made
  once per teacher and augment config; None when augmentation is off."""
  if config.augment.copies <= 0:
    return None
  adir = artefacts.augment_dir(workdir)
  fingerprint = {"teacher_checkpoint_id": teacher_result["checkpoint_id"],
                 "vocab_hash": vocab.hash, "max_len": config.data.max_len,
                 "augment": config.augment.to_dict(), "seed": config.seed,
                 "probes": config.probes.to_dict(),
                 "train_examples": len(splits["train"]["label"])}

  def compute():
    teacher, params, _ = finetune.load_finetuned(workdir, config.teacher.checkpoint)
    summary = probes.run_augmentation(config, splits["train"], vocab.path, vocab.hash,
                                      teacher, params, knowledge["emb_tables"]["word"],
                                      teacher_result, workdir)
    io_utils.save_json_atomic(os.path.join(adir, artefacts.RESULT_FILE), summary)
    return summary

  summary = runner.run_stage("augment", adir, artefacts.RESULT_FILE, fingerprint, overwrite,
                             compute)
  meta = probes.augmented_meta(teacher_result, vocab.hash, config.data.max_len,
                               summary["examples"], config.augment)
  return probes.load_augmented(os.path.join(adir, artefacts.AUGMENTED_FILE), splits["train"],
                               meta)


def ensure_search(config, task, splits, knowledge, workdir, teacher_result,
                  overwrite=False, *, vocab) -> dict:
  """The finished search; with search.train_data=augmented the augment stage runs first
  (ensure_augmented: made once, reused by the student)."""
  fingerprint = search.search_fingerprint(config, teacher_result["checkpoint_id"],
                                            task.is_pair)

  def run():
    augmented = (ensure_augmented(config, splits, vocab, workdir, teacher_result, knowledge,
                                  overwrite) if config.search.train_data == "augmented"
                 else None)
    return search.run_search(config, task, splits, knowledge["knowledge"],
                             knowledge["emb_tables"], teacher_result, workdir, augmented)

  return runner.run_stage("search", artefacts.search_dir(workdir), artefacts.RESULT_FILE,
                          fingerprint, overwrite, run)


def scratch_params(config, task, geno, emb_tables, seed: int | None = None) -> dict:
  """A student of `geno` with freshly initialised weights (seed + 11; seed defaults to the
  config's)."""
  supernet_cfg = search.setup_from_config(config.search, task.is_pair).supernet
  seed = config.seed if seed is None else seed
  return model.init_student(jax.random.key(seed + 11), geno, supernet_cfg.hidden,
                            emb_tables["word"].shape[1], task.num_classes,
                            exact_match=supernet_cfg.exact_match)


def heldout_scores(params, geno, held, emb_tables, batch_size: int) -> dict:
  """Cross-entropy against the labels ("ce") and accuracy (%) of a student on `held`."""
  logits_NC = student_train.predict_logits(params, geno, held, emb_tables, batch_size,
                                           sharding.make_mesh(1))
  return {"ce": float(losses.cross_entropy(logits_NC, held["label"]).mean()),
          "accuracy": 100.0 * float(np.mean(logits_NC.argmax(-1) == held["label"]))}


def long_examples(held: dict, min_tokens: int) -> dict:
  """The examples of `held` with at least `min_tokens` tokens (the scripts' --min_tokens)."""
  long = batching.take(held, np.flatnonzero(held["attention_mask"].sum(1) >= min_tokens))
  if not len(long["label"]):
    raise UserError(f"--min_tokens={min_tokens}: no held-out example is that long.")
  return long


def proxy_trained(config, task, geno, train, emb_tables, steps: int,
                  seed: int | None = None) -> dict:
  """The student of `geno` trained from scratch for `steps` batches of `train` alone (the
  derive's proxy rule, experiments/proxy_rank.py); `seed` (default the config's) sets its
  initialisation and batch order."""
  seed = config.seed if seed is None else seed
  return student_train.train_briefly(config, geno, scratch_params(config, task, geno,
                                                                  emb_tables, seed),
                                     train, emb_tables, steps, jax.random.key(seed))


def ensure_derive(config, task, splits, knowledge, workdir, search_result,
                  overwrite=False) -> dict:
  """The discrete architecture of a finished search, by config.derive.method."""
  derive.check_config(config)
  setup = search.setup_from_config(config.search, task.is_pair)

  def proxy_score(geno, train, held):
    runs = [heldout_scores(proxy_trained(config, task, geno, train, knowledge["emb_tables"],
                                         config.derive.proxy_steps, config.seed + offset),
                           geno, held, knowledge["emb_tables"], config.student.batch_size)
            for offset in range(config.derive.proxy_seeds)]
    if len(runs) == 1:
      return runs[0]
    return {"ce": float(np.mean([r["ce"] for r in runs])),
            "accuracy": float(np.mean([r["accuracy"] for r in runs])),
            "ce_per_seed": [r["ce"] for r in runs]}

  return runner.run_stage("derive", artefacts.derive_dir(workdir), artefacts.RESULT_FILE,
                   derive.derive_fingerprint(config, search_result), overwrite,
                   lambda: derive.run_derive(config, task, splits, knowledge["knowledge"],
                                             knowledge["emb_tables"], workdir, setup,
                                             proxy_score=proxy_score))


def searched_genotype(workdir):
  """The derived genotype (ensure_derive) of the run in `workdir`."""
  path = os.path.join(artefacts.derive_dir(workdir), artefacts.GENOTYPE_FILE)
  if not os.path.isfile(path):
    raise UserError(f"{path} is missing: the derive stage has not run in {workdir} "
                    "(experiments/pipeline.py or train_student.py runs it).")
  return genotype_lib.Genotype.load(path)


def searched_params(workdir):
  """The final supernet params of a finished search (a full restore: only when needed)."""
  return checkpoints.restore_pytree(os.path.join(artefacts.search_dir(workdir), artefacts.FINAL_PARAMS))


STUDENT_INITS = ("inherit", "scratch")


def check_student_init(init: str) -> None:
  if init not in STUDENT_INITS:
    raise UserError(f"--config.student.init={init!r}: use {' or '.join(STUDENT_INITS)}.")


def student_fields(config) -> dict:
  """The student config in a student's fingerprint: without the operational keys, and
  without seed_offset at 0, so students trained before it existed are still reused."""
  fields = checkpoints.without_operational_keys(config.student.to_dict())
  if not fields.get("seed_offset", 1):
    del fields["seed_offset"]
  return fields


def ensure_student(config, task, splits, knowledge, workdir, search_fingerprint, *,
                   geno=None, name="student", init=None, augmented=None,
                   overwrite=False) -> dict:
  """Trains the student of the searched genotype (or of `geno`, for baselines), on train
  plus the `augmented` copies (ensure_augmented) when there are any. `search_fingerprint`
  is the search's (ensure_search's result["fingerprint"]; inherited weights come from the
  search folder), so a from-scratch student of a given genotype needs no search, only
  search.search_fingerprint(...) (train_student.py)."""
  init = init or config.student.init
  check_student_init(init)
  geno = geno or searched_genotype(workdir)
  supernet_cfg = search.setup_from_config(config.search, task.is_pair).supernet
  fingerprint = {"student": student_fields(config), "init": init,
                 "genotype": json.loads(geno.to_json()),
                 "search": search_fingerprint}
  if augmented is not None:
    fingerprint["augment"] = config.augment.to_dict()

  def run():
    if init == "inherit":
      params = model.from_supernet(searched_params(workdir), geno, supernet_cfg)
    else:
      params = scratch_params(config, task, geno, knowledge["emb_tables"],
                              config.seed + config.student.seed_offset)
    train = batching.fixed_subset(
        search.with_knowledge(splits["train"], knowledge["knowledge"]["train"]),
        config.student.train_subset, config.seed)
    if augmented is not None:
      train = {k: np.concatenate([train[k], augmented[k]]) for k in train}
    return student_train.train_student(config, task, geno, params, train,
                                       splits[task.main_dev_split], knowledge["emb_tables"],
                                       artefacts.student_dir(workdir, name), name,
                                       vocab=data_pipeline.teacher_vocab(config))

  return runner.run_stage(name, artefacts.student_dir(workdir, name), artefacts.RESULT_FILE,
                          fingerprint, overwrite, run)


BASELINES = ("student_scratch", "random_arch", "plain_cnn")


def check_baselines(names) -> None:
  unknown = [n for n in names if n not in BASELINES]
  if unknown or not names:
    raise UserError(f"--baseline_names={','.join(names)}: use some of {','.join(BASELINES)}.")


def ensure_baselines(config, task, splits, knowledge, workdir, search_fingerprint,
                     augmented=None, overwrite=False, names=BASELINES) -> dict[str, dict]:
  """What the search buys: students trained with the same KD loss and budget from scratch,
  on the searched genotype (student_scratch), on a random genotype of the same depth
  (random_arch), and on a plain CNN (a chain of conv3 in each cell) of the same depth
  (plain_cnn); `names` picks some of them, trained in the order given."""
  check_baselines(names)
  searched = searched_genotype(workdir)
  genotypes = {"student_scratch": searched,
               **genotype_lib.baseline_genotypes(searched, config.seed)}
  return {name: ensure_student(config, task, splits, knowledge, workdir, search_fingerprint,
                               geno=genotypes[name], name=name, init="scratch",
                               augmented=augmented, overwrite=overwrite)
          for name in dict.fromkeys(names)}


def load_student(workdir: str, name: str = "student"):
  """(genotype, exported params, result) of a trained student, from its export folder."""
  sdir = artefacts.student_dir(workdir, name)
  if not os.path.isfile(os.path.join(sdir, artefacts.RESULT_FILE)):
    raise UserError(f"{sdir} has no finished student (no result.json): run its training "
                    "first (pipeline.py or train_student.py with this --workdir).")
  result = io_utils.load_json(os.path.join(sdir, artefacts.RESULT_FILE))
  params, geno, _, _ = export.load_export(os.path.join(sdir, artefacts.EXPORT_DIR))
  return geno, params, result


def trained_cell(spec: str, workdir: str, flag: str) -> tuple[genotype_lib.Genotype, dict]:
  """(genotype, result.json) of a trained model named as the scripts' flags name one: a
  student folder of `workdir` (student, plain_cnn, ...) or RUNDIR:name; `flag` is the
  flag that named it, for the error."""
  run_dir, name = spec.rsplit(":", 1) if ":" in spec else (workdir, spec)
  path = os.path.join(artefacts.student_dir(run_dir, name), artefacts.RESULT_FILE)
  if not os.path.isfile(path):
    raise UserError(f"{flag}={spec}: no trained model {name!r} in {run_dir}.")
  result = io_utils.load_json(path)
  return genotype_lib.Genotype.from_json(json.dumps(result["genotype"])), result


def dev_comparisons(task, splits, knowledge, workdir, baseline_names=()) -> dict[str, dict]:
  """The student against the teacher and each baseline, paired on the main dev split's
  examples (eval/compare.py); the teacher's predictions are its precomputed dev logits."""
  dev = splits[task.main_dev_split]
  mesh = sharding.make_mesh(1)

  def correct_of(name):
    geno, params, _ = load_student(workdir, name)
    return student_train.predict(params, geno, dev, None, 64, mesh) == dev["label"]

  student = correct_of("student")
  teacher_logits = knowledge["knowledge"][task.main_dev_split]["teacher_logits"]
  others = {"teacher": teacher_logits.argmax(-1) == dev["label"],
            **{name: correct_of(name) for name in baseline_names}}
  return {name: compare.paired_comparison(student, correct)
          for name, correct in others.items()}


def serving_runtimes(workdir, student, teacher) -> list:
  """(name, batch -> logits) of the student in JAX and on onnxruntime (from its export
  folder; skipped when onnxruntime is not installed) and of the teacher."""
  runtimes = [("student, JAX", benchmark.jitted_runtime(student.apply, student.params))]
  if importlib.util.find_spec("onnxruntime") is not None:
    onnx_logits = export.load_onnx(os.path.join(artefacts.student_dir(workdir), artefacts.EXPORT_DIR))
    runtimes.append(("student, onnxruntime", lambda batch: onnx_logits(
        *(batch[name] for name in onnx_export.INPUT_NAMES))))
  runtimes.append(("teacher, JAX", benchmark.jitted_runtime(teacher.apply, teacher.params)))
  return runtimes


def ensure_benchmark(config, task, splits, workdir, teacher_result, student_result,
                     overwrite=False) -> dict:
  """Student, teacher and BERT-base timed in one run (see eval/benchmark.py); the serving
  figures also on the main dev split's real lengths."""
  bench_dir = artefacts.bench_dir(workdir)
  fingerprint = {"bench": config.bench.to_dict(), "student": student_result["genotype"],
                 "teacher": teacher_result["checkpoint_id"],
                 "serving_inputs": "full length, dev lengths"}

  def run():
    geno, student_params, _ = load_student(workdir)
    teacher, teacher_params, _ = finetune.load_finetuned(workdir, config.teacher.checkpoint)
    models = [
        benchmark.BenchModel(
            f"AdaBERT student (K={geno.depth})",
            lambda p, b: model.student_apply(p, b, geno)["logits"], student_params,
            student_result["dev"]["score"]),
        benchmark.BenchModel(f"teacher ({teacher.num_layers}x{teacher.hidden_size})",
                             lambda p, b: teacher.logits(p, b), teacher_params,
                             teacher_result["dev"]["score"]),
    ]
    if config.bench.bert_base:
      models.append(benchmark.bert_base_random(task.num_classes))
    max_len = min(config.bench.max_len, student_params["embedding"]["position"].shape[0])
    result = benchmark.compare(models, config.bench.batch_size, max_len,
                               config.bench.repeats, pair=task.is_pair)
    if config.bench.serving_requests:
      result["serving"] = benchmark.serving(
          serving_runtimes(workdir, models[0], models[1]), config.bench.batch_size, max_len,
          config.bench.serving_requests, pair=task.is_pair,
          real=splits[task.main_dev_split])
    io_utils.save_json_atomic(os.path.join(bench_dir, artefacts.BENCH_FILE), result)
    return result

  return runner.run_stage("benchmark", bench_dir, artefacts.BENCH_FILE, fingerprint, overwrite, run)
