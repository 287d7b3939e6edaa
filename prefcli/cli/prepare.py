"""``prefcli prepare``: turn public preference datasets into prefcli records (JSON Lines + ``.meta.json`` sidecar).

Each command parses its flags, opens the input, and hands a converter to ``prefcli.data.runner.run_prepare``;
this module only wires flags, the progress bar, the sidecar and the closing table.
"""

from __future__ import annotations

import inspect
import shlex
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Literal

import typer

from prefcli.cli.common import console, err_console, progress_bar, renamed_flag, summary_table
from prefcli.errors import ConfigError
from prefcli.eval.paths import check_output_file

app = typer.Typer(help="Turn public preference datasets into prefcli records (JSONL with a .meta.json sidecar).",
                  no_args_is_help=True)

InputFormat = Literal["auto", "jsonl", "json", "parquet", "disk", "hub"]


@dataclass(frozen=True)
class SharedOptions:
    """The options every ``prepare`` command takes besides its own."""

    input: str
    output: Path
    seed: int
    skip_invalid: bool
    limit: int | None
    input_format: str
    split: str | None = None
    workers: int | None = None


@dataclass(frozen=True)
class Conversion:
    """What a command hands to :func:`_prepare`: its converter, its own flags (recorded in the sidecar) and, when
    records must be reordered, the writer factory."""

    convert: Callable
    flags: dict
    make_writer: Callable | None = None


def _option(name: str, annotation, default) -> inspect.Parameter:
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)


def _leading_options() -> list[inspect.Parameter]:
    return [
        _option("input", str, typer.Option(..., "--input", "-i", help="A .jsonl/.jsonl.gz/.json/.parquet file, a "
                                           "directory written by datasets.save_to_disk, or a hub id (needs the "
                                           "network).")),
        _option("output", Path, typer.Option(..., "--output", "-o", help="JSONL file to write (atomically), with "
                                             "<output>.meta.json; gzip-compressed when the name ends in .gz.")),
    ]


def _trailing_options(split: str | None) -> list[inspect.Parameter]:
    """The shared options listed after a command's own; ``--split`` only where the input may be a dataset."""
    params = [
        _option("seed", int, typer.Option(0, "--seed", help="Seed of every random draw (per row: --limit never "
                                          "changes a row's draw).")),
        _option("skip_invalid", bool, typer.Option(False, "--skip-invalid", help="Skip invalid rows and count them "
                                                   "by reason (default: stop at the first one).")),
        _option("limit", int | None, typer.Option(None, "--limit", min=1, help="Read at most N input rows.")),
        _option("input_format", InputFormat, typer.Option("auto", "--input-format", help="How to read --input "
                                                          "(auto: by extension / directory / id).")),
    ]
    if split is not None:
        params.append(_option("split", str | None, typer.Option(split, "--split", help="Split of a hub dataset or "
                                                                "of a saved DatasetDict.")))
    params.append(_option("workers", int | None, typer.Option(
        None, "--workers", hidden=True,
        help="Deprecated, has no effect: prepare runs in one process (worker processes were slower).")))
    return params


_SHARED = {field.name for field in fields(SharedOptions)}


def prepare_command(name: str, *, split: str | None = None):
    """Register ``function(shared, **own_options) -> Conversion`` as ``prefcli prepare NAME``: the command takes
    the shared options (``--split`` with default ``split`` when given) around its own, and runs :func:`_prepare`."""
    def decorate(function):
        own = [param.replace(kind=inspect.Parameter.KEYWORD_ONLY)
               for param in inspect.signature(function, eval_str=True).parameters.values()
               if param.name != "shared"]

        def command(**flags) -> None:
            shared = SharedOptions(**{key: flags.pop(key) for key in list(flags) if key in _SHARED})
            _prepare(name, shared, function(shared, **flags))

        command.__signature__ = inspect.Signature([*_leading_options(), *own, *_trailing_options(split)])
        command.__doc__ = function.__doc__
        command.__name__ = function.__name__
        app.command(name)(command)
        return function

    return decorate


def _command_line(name: str, options: dict) -> list[str]:
    """The full command line, every effective option spelled out, so the sidecar says how to redo the file."""
    argv = ["prefcli", "prepare", name]
    for flag, value in options.items():
        if value is None or value is False:
            continue
        argv += [flag] if value is True else [flag, str(value)]
    return [shlex.quote(part) for part in argv]


def _prepare(name: str, shared: SharedOptions, conversion: Conversion) -> None:
    """Run one prepare command; the conversion's own flags are recorded in the sidecar beside the shared ones."""
    from prefcli.data.readers import open_source
    from prefcli.data.runner import RecordWriter, run_prepare
    from prefcli.data.sidecar import sidecar_path, write_sidecar

    input, output = shared.input, shared.output
    options = {"--input": input, "--output": str(output), "--input-format": shared.input_format,
               "--split": shared.split, "--seed": shared.seed, "--limit": shared.limit,
               "--skip-invalid": shared.skip_invalid, **conversion.flags}
    if shared.workers is not None:
        err_console.print("[yellow]warning:[/yellow] --workers is deprecated and has no effect (prepare runs in one "
                          "process)", highlight=False)
    check_output_file(output, inputs={"--input": input})
    check_output_file(sidecar_path(output), flag="--output's sidecar")
    source = open_source(input, input_format=shared.input_format, split=shared.split)
    in_megabytes = source.unit == "bytes"
    scale = 1 / 1e6 if in_megabytes else 1
    with progress_bar() as progress:
        task = progress.add_task(f"prepare {name}" + (" (MB)" if in_megabytes else ""),
                                 total=source.total * scale if source.total else None, status="")

        def on_progress(position: int, rows: int) -> None:
            progress.update(task, completed=position * scale, status=f"{rows:,} rows")

        result = run_prepare(source, conversion.convert, output, limit=shared.limit,
                             skip_invalid=shared.skip_invalid, make_writer=conversion.make_writer or RecordWriter,
                             on_progress=on_progress)
    config = {key.lstrip("-").replace("-", "_"): value for key, value in options.items()}
    write_sidecar(output, config=config, seed=shared.seed, inputs={input: result.input_checksum},
                  counts=result.counts(), skipped=dict(result.skipped), argv=_command_line(name, options))
    console.print(summary_table(f"prefcli prepare {name} → {output}", result.summary_rows()))


@prepare_command("nectar", split="train")
def nectar(
    shared: SharedOptions,
    skip_ranks: int = typer.Option(1, "--skip-ranks", min=0,
                                   help="Answers ranked 2..1+N are dropped (MC-PO drops rank 2 to cut label noise)."),
    max_candidates: int | None = typer.Option(None, "--max-candidates", min=1,
                                                 help="Keep at most N candidates (the best-ranked ones)."),
    min_candidates: int = typer.Option(1, "--min-candidates", min=1,
                                       help="Skip rows left with fewer candidates (counted as 'too few answers')."),
    format: Literal["candidates", "pairs", "unpaired"] = typer.Option(
        "candidates", "--format",
        help="candidates: chosen + candidates + a seeded uniformly drawn rejected; pairs: chosen + rejected; "
             "unpaired: a desirable record and undesirable one(s) (see --unpaired-negatives)."),
    unpaired_negatives: Literal["one", "all"] | None = typer.Option(
        None, "--unpaired-negatives",
        help="With --format unpaired: the drawn rejected only, or every candidate. (default: one)"),
    negatives: Literal["one", "all"] | None = typer.Option(None, "--negatives", hidden=True),
) -> Conversion:
    """Nectar (ranked answers) → records: rank 1 chosen, next --skip-ranks dropped, the rest candidates.

    Example: prefcli prepare nectar --input nectar.jsonl --output data/nectar.jsonl --skip-ranks 1
    """
    from prefcli.data.nectar import NectarOptions, nectar_converter

    negatives = renamed_flag(negatives, unpaired_negatives, "--negatives", "--unpaired-negatives") or "one"
    try:
        options = NectarOptions(skip_ranks=skip_ranks, max_candidates=max_candidates,
                                min_candidates=min_candidates, format=format, negatives=negatives, seed=shared.seed)
    except ValueError as error:
        raise ConfigError(str(error)) from None
    flags = {"--skip-ranks": skip_ranks, "--max-candidates": max_candidates, "--min-candidates": min_candidates,
             "--format": format, "--unpaired-negatives": negatives if format == "unpaired" else None}
    return Conversion(nectar_converter(options), flags)


@prepare_command("ultrafeedback", split="train_prefs")
def ultrafeedback(
    shared: SharedOptions,
    format: Literal["pairs", "unpaired"] = typer.Option(
        "pairs", "--format", help="pairs: chosen + rejected; unpaired: a desirable and an undesirable record."),
    min_score_gap: float | None = typer.Option(
        None, "--min-score-gap", help="Skip rows where score_chosen - score_rejected is below this."),
) -> Conversion:
    """UltraFeedback-binarized (chosen/rejected message lists + scores) → pair records.

    Example: prefcli prepare ultrafeedback --input uf.parquet --output data/uf.jsonl
    """
    from prefcli.data.ultrafeedback import ultrafeedback_converter

    try:
        convert = ultrafeedback_converter(format, min_score_gap)
    except ValueError as error:
        raise ConfigError(str(error)) from None
    return Conversion(convert, {"--format": format, "--min-score-gap": min_score_gap})


@prepare_command("pairs", split="train")
def pairs(
    shared: SharedOptions,
    prompt_field: str = typer.Option("prompt", "--prompt-field", help="Field with the prompt (dots reach inside)."),
    chosen_field: str = typer.Option("chosen", "--chosen-field", help="Field with the preferred completion."),
    rejected_field: str = typer.Option("rejected", "--rejected-field", help="Field with the other completion."),
    id_field: str = typer.Option("id", "--id-field", help="Field with the row id (else the line number)."),
    format: Literal["pairs", "unpaired"] = typer.Option(
        "pairs", "--format", help="pairs: chosen + rejected; unpaired: a desirable and an undesirable record."),
) -> Conversion:
    """Any pair dataset → pair records, by naming its prompt / chosen / rejected fields.

    Example: prefcli prepare pairs --input se.jsonl --output data/se.jsonl --prompt-field question --chosen-field response_j --rejected-field response_k
    """
    from prefcli.data.pairs import PairFields, pairs_converter

    fields = PairFields(prompt=prompt_field, chosen=chosen_field, rejected=rejected_field, id=id_field)
    flags = {"--prompt-field": prompt_field, "--chosen-field": chosen_field, "--rejected-field": rejected_field,
             "--id-field": id_field, "--format": format}
    return Conversion(pairs_converter(fields, format), flags)


@prepare_command("unpair")
def unpair(
    shared: SharedOptions,
    unpaired_negatives: Literal["one", "all"] | None = typer.Option(
        None, "--unpaired-negatives", help="Undesirable records per prompt: one (the rejected, or a seeded draw from "
                                           "the candidates) or all (rejected and every candidate). (default: one)"),
    negatives: Literal["one", "all"] | None = typer.Option(None, "--negatives", hidden=True),
    pairing: Literal["keep", "shuffle", "one-sided"] = typer.Option(
        "keep", "--pairing",
        help="keep: a prompt's undesirable records follow its desirable one; shuffle: they are moved to other "
             "prompts' places (seeded permutation); one-sided: each prompt keeps only one label (seeded coin)."),
) -> Conversion:
    """Pair or candidate records → unpaired records (label true/false), e.g. for KTO or unpaired AOT.

    Example: prefcli prepare unpair --input data/nectar.jsonl --output data/nectar-unpaired.jsonl --pairing shuffle
    """
    from prefcli.data.runner import ShuffledPairingWriter
    from prefcli.data.transforms import unpair_converter

    make_writer = None
    if pairing == "shuffle":
        spool_dir = shared.output.resolve().parent

        def make_writer(path, compress):
            return ShuffledPairingWriter(path, compress, shared.seed, spool_dir)

    negatives = renamed_flag(negatives, unpaired_negatives, "--negatives", "--unpaired-negatives") or "one"
    return Conversion(unpair_converter(negatives, pairing, shared.seed),
                      {"--unpaired-negatives": negatives, "--pairing": pairing}, make_writer)


@prepare_command("noise")
def noise(
    shared: SharedOptions,
    as_rejected: bool = typer.Option(
        False, "--as-rejected", help="DPO(noise): also use the noise sample as rejected (default: only add it as "
                                     "a candidate, keeping the rejected)."),
) -> Conversion:
    """MC-PO noise injection: add a candidate made by swapping two random words of the chosen answer.

    Example: prefcli prepare noise --input data/nectar.jsonl --output data/nectar-noise.jsonl --as-rejected
    """
    from prefcli.data.transforms import noise_converter

    return Conversion(noise_converter(as_rejected, shared.seed), {"--as-rejected": as_rejected})


from prefcli.cli import prepare_generate  # noqa: E402 (sample + judge-rank: its own module)

prepare_generate.register(app)
