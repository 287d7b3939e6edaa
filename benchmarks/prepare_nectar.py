"""Benchmark: ``prefcli prepare nectar`` against a plain hand-written ``json.loads`` loop on a full-size Nectar file.

The script writes a synthetic file in Nectar's schema (183k rows by default, ~1 GB: a prompt in Anthropic
``\\n\\nHuman: …\\n\\nAssistant:`` form, one row in four multi-turn; 7 answers each with answer/model/rank in shuffled
order; Nectar's extra fields turns/num_responses/source/good_natured), then in the same run times

1. the peer: a straightforward loop (``json.loads`` per line, sort the answers, the same selection and seeded
   draw, ``json.dumps`` per record) that writes the same records, and
2. ``prefcli prepare nectar`` run as a subprocess (the real console script: start-up, imports, validation,
   progress bar, input checksum, atomic write with fsync and the sidecar all included),

checks that both outputs are byte-identical, and prints the time ratio prefcli / peer (target <= 0.5) and
prefcli's peak RSS (target <= 1 GB). Both contenders run as child processes, in interleaved rounds whose order
alternates (peer first, then prefcli first...), so a machine shared with other jobs slows both alike; each
round's wall-time ratio is printed with the median over rounds, and the CPU-time ratio (user + system, from
``os.wait4``) beside it, which load on the machine disturbs less.

    nice -n 5 python benchmarks/prepare_nectar.py                 # full size, in a temporary directory
    nice -n 5 python benchmarks/prepare_nectar.py --rows 20000    # quicker
    nice -n 5 python benchmarks/prepare_nectar.py --dir /data/bench --keep --repeat 3
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from prefcli.data.nectar import parse_nectar_prompt
from prefcli.data.seeding import draw_index
from prefcli.data.sidecar import file_checksum

_WORDS = ("the a an model answer question data good bad helpful harmless honest reply user assistant explain why "
          "how what when where which list write code python function return value number one two three four five "
          "red blue green tree river city music science history math story poem short long clear wrong right "
          "because first then finally please thanks sure here is are was be can will should would could not very "
          "more less, also; however: (for example) 'quoted' \"double\" 1. 2. 3. - * ** `code` x = y + 1").split()
_UNICODE = ["café", "naïve", "東京", "数据", "привет", "мир", "🙂", "—", "“quoted”", "€", "ß", "ñ"]
_MODELS = ["gpt-4", "gpt-3.5-turbo", "gpt-3.5-turbo-instruct", "llama-2-7b-chat", "mistral-7b-instruct",
           "anthropic", "vicuna-33b", "wizardlm-13b", "starling-lm-7b-alpha", "claude-1"]
_SOURCES = ["sharegpt", "lmsys-chat-1m", "anthropic-hh", "evol_instruct", "ultrachat", "flan_v2_niv2"]


def _corpus(rng: random.Random, size: int) -> str:
    """A few MB of text to cut answers from: words, some non-ASCII, line breaks and list markers."""
    pieces, total = [], 0
    while total < size:
        word = rng.choice(_UNICODE) if rng.random() < 0.02 else rng.choice(_WORDS)
        roll = rng.random()
        if roll < 0.015:
            word += "\n\n"
        elif roll < 0.03:
            word += "\n- "
        pieces.append(word)
        total += len(word) + 1
    return " ".join(pieces)


def write_nectar(path: Path, rows: int, seed: int = 0) -> int:
    """Write ``rows`` Nectar-schema rows (about 5.6 kB each); returns the file size in bytes."""
    rng = random.Random(seed)
    corpus = _corpus(rng, 4_000_000)
    limit = len(corpus) - 4000

    def text(low: int, high: int) -> str:
        start = rng.randrange(limit)
        return corpus[start:start + rng.randint(low, high)].strip() or "empty"

    with path.open("w", encoding="utf-8") as handle:
        for _ in range(rows):
            turns = rng.choice((1, 1, 1, 2, 3))
            prompt = ""
            for turn in range(turns):
                prompt += f"\n\nHuman: {text(20, 500)}\n\nAssistant:"
                if turn < turns - 1:
                    prompt += f" {text(50, 600)}"
            ranks = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]
            rng.shuffle(ranks)
            answers = [{"answer": text(100, 1180), "model": rng.choice(_MODELS), "rank": rank} for rank in ranks]
            row = {"prompt": prompt, "answers": answers, "turns": turns, "num_responses": 7,
                   "source": [rng.choice(_SOURCES)], "good_natured": rng.random() < 0.9}
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path.stat().st_size


def peer_loop(source: Path, output: Path, seed: int = 0, skip_ranks: int = 1) -> None:
    """The peer: a plain json.loads loop doing the same selection and writing the same records as
    ``prefcli prepare nectar --format candidates --skip-ranks 1 --seed 0`` (format and meta field by field)."""
    with source.open(encoding="utf-8") as src, output.open("w", encoding="utf-8") as dst:
        for line_number, line in enumerate(src, 1):
            row = json.loads(line)
            answers = [answer for _, answer in sorted(enumerate(row["answers"]),
                                                      key=lambda pair: (pair[1]["rank"], pair[0]))]
            chosen, dropped, candidates = answers[0], answers[1:1 + skip_ranks], answers[1 + skip_ranks:]
            pick = draw_index(seed, "rejected", line_number, len(candidates))
            meta = {key: value for key, value in row.items() if key not in ("prompt", "answers", "id")}
            meta.update(chosen_model=chosen["model"], chosen_rank=chosen["rank"],
                        rejected_model=candidates[pick]["model"], rejected_rank=candidates[pick]["rank"],
                        rejected_index=pick, candidate_models=[a["model"] for a in candidates],
                        candidate_ranks=[a["rank"] for a in candidates], dropped_models=[a["model"] for a in dropped],
                        dropped_ranks=[a["rank"] for a in dropped])
            record = {"id": row.get("id", line_number), "prompt": parse_nectar_prompt(row["prompt"]),
                      "chosen": chosen["answer"], "rejected": candidates[pick]["answer"],
                      "candidates": [a["answer"] for a in candidates], "meta": meta}
            dst.write(json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n")


def _warm_up_writes(workdir: Path, size: int) -> None:
    """Write and delete a scratch file as large as the input: on a fresh VM the first write into never-used memory
    is several times slower than later ones, which would penalise whichever contender writes first."""
    scratch = workdir / "scratch.bin"
    block = b"\0" * (8 << 20)
    with scratch.open("wb") as handle:
        for _ in range(size // len(block) + 1):
            handle.write(block)
    scratch.unlink()


def _timed(command: list[str]) -> tuple[float, float, float]:
    """Run ``command``; return (wall seconds, CPU seconds, peak RSS in MB) of that child alone."""
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"{command[:4]} failed: {process.stderr.read().decode()[-2000:]}")
    process.stderr.close()
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=183_000, help="rows in the synthetic file (Nectar: 183k)")
    parser.add_argument("--dir", type=Path, default=None, help="where to write (default: a temporary directory)")
    parser.add_argument("--keep", action="store_true", help="keep the input file")
    parser.add_argument("--repeat", type=int, default=3, help="rounds (each runs both contenders once)")
    parser.add_argument("--peer", nargs=2, type=Path, metavar=("INPUT", "OUTPUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.peer:
        peer_loop(*args.peer)
        return

    workdir = args.dir or Path(tempfile.mkdtemp(prefix="prefcli-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    source = workdir / f"nectar-{args.rows}.jsonl"
    try:
        if not source.exists():
            started = time.perf_counter()
            size = write_nectar(source, args.rows)
            print(f"wrote {args.rows:,} rows, {size / 1e9:.2f} GB in {time.perf_counter() - started:.1f} s")
        size = source.stat().st_size
        file_checksum(source)  # warm the page cache so both contenders read from memory
        _warm_up_writes(workdir, size)

        peer_out, prefcli_out = workdir / "peer.jsonl", workdir / "prefcli.jsonl"
        prefcli = [str(Path(sys.executable).with_name("prefcli")), "prepare", "nectar", "--input", str(source),
                   "--output", str(prefcli_out), "--skip-ranks", "1", "--seed", "0"]
        if not Path(prefcli[0]).exists():
            prefcli[:1] = [sys.executable, "-m", "prefcli"]
        peer = [sys.executable, str(Path(__file__).resolve()), "--peer", str(source), str(peer_out)]
        runs: dict[str, list[tuple[float, float, float]]] = {"peer": [], "prefcli": []}
        identical, out_size = True, 0
        for round_ in range(args.repeat):
            order = ("peer", "prefcli") if round_ % 2 == 0 else ("prefcli", "peer")
            for name in order:
                runs[name].append(_timed(peer if name == "peer" else prefcli))
            identical &= file_checksum(prefcli_out) == file_checksum(peer_out)
            out_size = prefcli_out.stat().st_size
            for out in (peer_out, prefcli_out):  # give the pages back, so each round writes into recycled memory
                out.unlink()

        wall_ratios = [mine[0] / theirs[0] for mine, theirs in zip(runs["prefcli"], runs["peer"])]
        cpu_ratios = [mine[1] / theirs[1] for mine, theirs in zip(runs["prefcli"], runs["peer"])]
        peak_rss_mb = max(run[2] for run in runs["prefcli"])
        print(f"input: {args.rows:,} rows, {size / 1e9:.2f} GB; output {out_size / 1e9:.2f} GB "
              f"({'byte-identical' if identical else 'DIFFERENT'} to the peer's); {args.repeat} interleaved rounds")
        for name, label in (("peer", "json.loads loop (peer)"), ("prefcli", "prefcli prepare nectar")):
            walls = [run[0] for run in runs[name]]
            print(f"{label}:  median {statistics.median(walls):7.2f} s "
                  f"({size / 1e6 / statistics.median(walls):6.1f} MB/s)  wall: "
                  f"{', '.join(f'{run[0]:.2f}' for run in runs[name])}  cpu: "
                  f"{', '.join(f'{run[1]:.2f}' for run in runs[name])}")
        print(f"ratio prefcli / peer, wall: {statistics.median(wall_ratios):.2f}x median "
              f"({', '.join(f'{r:.2f}' for r in wall_ratios)}; target <= 0.5)   cpu: "
              f"{statistics.median(cpu_ratios):.2f}x ({', '.join(f'{r:.2f}' for r in cpu_ratios)})")
        print(f"peak RSS of prefcli: {peak_rss_mb:.0f} MB (target <= 1024)   load average now: "
              f"{', '.join(f'{x:.1f}' for x in os.getloadavg())}")
        if not identical:
            sys.exit("outputs differ")
    finally:
        if not args.keep and args.dir is None:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
