"""``prefcli prepare``: turn public preference datasets into prefcli records (JSON Lines + ``.meta.json`` sidecar).

Each command parses its flags, opens the input, and hands a converter to ``prefcli.data.runner.run_prepare``;
this module only wires flags, the progress bar, the sidecar and the closing table.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import typer

from prefcli.cli.common import console, err_console, progress_bar, renamed_flag, summary_table
from prefcli.errors import ConfigError
from prefcli.eval.paths import check_output_file

app = typer.Typer(help="Turn public preference datasets into prefcli records (JSONL with a .meta.json sidecar).",
                  no_args_is_help=True)

InputFormat = Literal["auto", "jsonl", "json", "parquet", "disk", "hub"]


def _input_option():
    return typer.Option(..., "--input", "-i", help="A .jsonl/.jsonl.gz/.json/.parquet file, a directory written by "
                                                   "datasets.save_to_disk, or a hub id (needs the network).")


def _output_option():
    return typer.Option(..., "--output", "-o", help="JSONL file to write (atomically), with <output>.meta.json; "
                                                    "gzip-compressed when the name ends in .gz.")


def _seed_option():
    return typer.Option(0, "--seed", help="Seed of every random draw (per row: --limit never changes a row's draw).")


def _skip_invalid_option():
    return typer.Option(False, "--skip-invalid",
                        help="Skip invalid rows and count them by reason (default: stop at the first one).")


def _limit_option():
    return typer.Option(None, "--limit", min=1, help="Read at most N input rows.")


def _input_format_option():
    return typer.Option("auto", "--input-format", help="How to read --input (auto: by extension / directory / id).")


def _workers_option():
    return typer.Option(None, "--workers", hidden=True,
                        help="Deprecated, has no effect: prepare runs in one process (worker processes were slower).")


def _split_option(default: str | None):
    return typer.Option(default, "--split", help="Split of a hub dataset or of a saved DatasetDict.")


def _command_line(name: str, options: dict) -> list[str]:
    """The full command line, every effective option spelled out, so the sidecar says how to redo the file."""
    argv = ["prefcli", "prepare", name]
    for flag, value in options.items():
        if value is None or value is False:
            continue
        argv += [flag] if value is True else [flag, str(value)]
    return [shlex.quote(part) for part in argv]


def _prepare(name: str, *, input: str, output: Path, convert, flags: dict, seed: int | None,
             limit: int | None, skip_invalid: bool, input_format: str, split: str | None,
             workers: int | None = None, make_writer: Callable | None = None) -> None:
    """Run one prepare command; ``flags`` are its own options, recorded in the sidecar beside the shared ones."""
    options = {"--input": input, "--output": str(output), "--input-format": input_format, "--split": split,
               "--seed": seed, "--limit": limit, "--skip-invalid": skip_invalid, **flags}
    from prefcli.data.readers import open_source
    from prefcli.data.runner import RecordWriter, run_prepare
    from prefcli.data.sidecar import sidecar_path, write_sidecar

    if workers is not None:
        err_console.print("[yellow]warning:[/yellow] --workers is deprecated and has no effect (prepare runs in one "
                          "process)", highlight=False)
    check_output_file(output, inputs={"--input": input})
    check_output_file(sidecar_path(output), flag="--output's sidecar")
    source = open_source(input, input_format=input_format, split=split)
    in_megabytes = source.unit == "bytes"
    scale = 1 / 1e6 if in_megabytes else 1
    with progress_bar() as progress:
        task = progress.add_task(f"prepare {name}" + (" (MB)" if in_megabytes else ""),
                                 total=source.total * scale if source.total else None, status="")

        def on_progress(position: int, rows: int) -> None:
            progress.update(task, completed=position * scale, status=f"{rows:,} rows")

        result = run_prepare(source, convert, output, limit=limit, skip_invalid=skip_invalid,
                             make_writer=make_writer or RecordWriter, on_progress=on_progress)
    config = {key.lstrip("-").replace("-", "_"): value for key, value in options.items()}
    write_sidecar(output, config=config, seed=seed, inputs={input: result.input_checksum},
                  counts=result.counts(), skipped=dict(result.skipped), argv=_command_line(name, options))
    console.print(summary_table(f"prefcli prepare {name} → {output}", result.summary_rows()))


@app.command("nectar")
def nectar(
    input: str = _input_option(),
    output: Path = _output_option(),
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
    seed: int = _seed_option(),
    skip_invalid: bool = _skip_invalid_option(),
    limit: int | None = _limit_option(),
    input_format: InputFormat = _input_format_option(),
    split: str | None = _split_option("train"),
    workers: int | None = _workers_option(),
) -> None:
    """Nectar (ranked answers) → records: rank 1 chosen, next --skip-ranks dropped, the rest candidates.

    Example: prefcli prepare nectar --input nectar.jsonl --output data/nectar.jsonl --skip-ranks 1
    """
    from prefcli.data.nectar import NectarOptions, nectar_converter

    negatives = renamed_flag(negatives, unpaired_negatives, "--negatives", "--unpaired-negatives") or "one"
    try:
        options = NectarOptions(skip_ranks=skip_ranks, max_candidates=max_candidates,
                                min_candidates=min_candidates, format=format, negatives=negatives, seed=seed)
    except ValueError as error:
        raise ConfigError(str(error)) from None
    flags = {"--skip-ranks": skip_ranks, "--max-candidates": max_candidates, "--min-candidates": min_candidates,
             "--format": format, "--unpaired-negatives": negatives if format == "unpaired" else None}
    _prepare("nectar", input=input, output=output, convert=nectar_converter(options), flags=flags,
             seed=seed, limit=limit, skip_invalid=skip_invalid, input_format=input_format, split=split,
             workers=workers)


@app.command("ultrafeedback")
def ultrafeedback(
    input: str = _input_option(),
    output: Path = _output_option(),
    format: Literal["pairs", "unpaired"] = typer.Option(
        "pairs", "--format", help="pairs: chosen + rejected; unpaired: a desirable and an undesirable record."),
    min_score_gap: float | None = typer.Option(
        None, "--min-score-gap", help="Skip rows where score_chosen - score_rejected is below this."),
    seed: int = _seed_option(),
    skip_invalid: bool = _skip_invalid_option(),
    limit: int | None = _limit_option(),
    input_format: InputFormat = _input_format_option(),
    split: str | None = _split_option("train_prefs"),
    workers: int | None = _workers_option(),
) -> None:
    """UltraFeedback-binarized (chosen/rejected message lists + scores) → pair records.

    Example: prefcli prepare ultrafeedback --input uf.parquet --output data/uf.jsonl
    """
    from prefcli.data.ultrafeedback import ultrafeedback_converter

    try:
        convert = ultrafeedback_converter(format, min_score_gap)
    except ValueError as error:
        raise ConfigError(str(error)) from None
    flags = {"--format": format, "--min-score-gap": min_score_gap}
    _prepare("ultrafeedback", input=input, output=output, convert=convert, flags=flags,
             seed=seed, limit=limit, skip_invalid=skip_invalid, input_format=input_format, split=split,
             workers=workers)


@app.command("pairs")
def pairs(
    input: str = _input_option(),
    output: Path = _output_option(),
    prompt_field: str = typer.Option("prompt", "--prompt-field", help="Field with the prompt (dots reach inside)."),
    chosen_field: str = typer.Option("chosen", "--chosen-field", help="Field with the preferred completion."),
    rejected_field: str = typer.Option("rejected", "--rejected-field", help="Field with the other completion."),
    id_field: str = typer.Option("id", "--id-field", help="Field with the row id (else the line number)."),
    format: Literal["pairs", "unpaired"] = typer.Option(
        "pairs", "--format", help="pairs: chosen + rejected; unpaired: a desirable and an undesirable record."),
    seed: int = _seed_option(),
    skip_invalid: bool = _skip_invalid_option(),
    limit: int | None = _limit_option(),
    input_format: InputFormat = _input_format_option(),
    split: str | None = _split_option("train"),
    workers: int | None = _workers_option(),
) -> None:
    """Any pair dataset → pair records, by naming its prompt / chosen / rejected fields.

    Example: prefcli prepare pairs --input se.jsonl --output data/se.jsonl --prompt-field question --chosen-field response_j --rejected-field response_k
    """
    from prefcli.data.pairs import PairFields, pairs_converter

    fields = PairFields(prompt=prompt_field, chosen=chosen_field, rejected=rejected_field, id=id_field)
    flags = {"--prompt-field": prompt_field, "--chosen-field": chosen_field, "--rejected-field": rejected_field,
             "--id-field": id_field, "--format": format}
    _prepare("pairs", input=input, output=output, convert=pairs_converter(fields, format), flags=flags,
             seed=seed, limit=limit, skip_invalid=skip_invalid, input_format=input_format, split=split,
             workers=workers)


@app.command("unpair")
def unpair(
    input: str = _input_option(),
    output: Path = _output_option(),
    unpaired_negatives: Literal["one", "all"] | None = typer.Option(
        None, "--unpaired-negatives", help="Undesirable records per prompt: one (the rejected, or a seeded draw from "
                                           "the candidates) or all (rejected and every candidate). (default: one)"),
    negatives: Literal["one", "all"] | None = typer.Option(None, "--negatives", hidden=True),
    pairing: Literal["keep", "shuffle", "one-sided"] = typer.Option(
        "keep", "--pairing",
        help="keep: a prompt's undesirable records follow its desirable one; shuffle: they are moved to other "
             "prompts' places (seeded permutation); one-sided: each prompt keeps only one label (seeded coin)."),
    seed: int = _seed_option(),
    skip_invalid: bool = _skip_invalid_option(),
    limit: int | None = _limit_option(),
    input_format: InputFormat = _input_format_option(),
    workers: int | None = _workers_option(),
) -> None:
    """Pair or candidate records → unpaired records (label true/false), e.g. for KTO or unpaired AOT.

    Example: prefcli prepare unpair --input data/nectar.jsonl --output data/nectar-unpaired.jsonl --pairing shuffle
    """
    from prefcli.data.runner import ShuffledPairingWriter
    from prefcli.data.transforms import unpair_converter

    make_writer = None
    if pairing == "shuffle":
        spool_dir = output.resolve().parent

        def make_writer(path, compress):
            return ShuffledPairingWriter(path, compress, seed, spool_dir)

    negatives = renamed_flag(negatives, unpaired_negatives, "--negatives", "--unpaired-negatives") or "one"
    flags = {"--unpaired-negatives": negatives, "--pairing": pairing}
    convert = unpair_converter(negatives, pairing, seed)
    _prepare("unpair", input=input, output=output, convert=convert, flags=flags,
             seed=seed, limit=limit, skip_invalid=skip_invalid, input_format=input_format, split=None,
             workers=workers, make_writer=make_writer)


@app.command("noise")
def noise(
    input: str = _input_option(),
    output: Path = _output_option(),
    as_rejected: bool = typer.Option(
        False, "--as-rejected", help="DPO(noise): also use the noise sample as rejected (default: only add it as "
                                     "a candidate, keeping the rejected)."),
    seed: int = _seed_option(),
    skip_invalid: bool = _skip_invalid_option(),
    limit: int | None = _limit_option(),
    input_format: InputFormat = _input_format_option(),
    workers: int | None = _workers_option(),
) -> None:
    """MC-PO noise injection: add a candidate made by swapping two random words of the chosen answer.

    Example: prefcli prepare noise --input data/nectar.jsonl --output data/nectar-noise.jsonl --as-rejected
    """
    from prefcli.data.transforms import noise_converter

    convert = noise_converter(as_rejected, seed)
    flags = {"--as-rejected": as_rejected}
    _prepare("noise", input=input, output=output, convert=convert, flags=flags,
             seed=seed, limit=limit, skip_invalid=skip_invalid, input_format=input_format, split=None,
             workers=workers)

from prefcli.cli import prepare_generate  # noqa: E402 (sample + judge-rank: its own module)

prepare_generate.register(app)
