"""Judge protocols as data: each one is a small YAML file (prompt template, verdict pattern, weights, order policy),
found by name among the files beside this module or by path, like lm-eval's task YAMLs.

A protocol shows the judge two outputs, ``output_1`` (first) and ``output_2`` (second). Its verdict labels give the
score of the *first* output (1 = first better, 0.5 = tie, 0 = second better) and how many games the verdict counts
for (``weight``; Arena-Hard counts a strong verdict as 3). The run maps that score to the model's side.

YAML keys::

    name, version, description
    template:           one of
      alpaca_eval: NAME     the prompt file of the installed alpaca-eval package's evaluator config NAME
      system: ..., user: ...    inline text
      file: PATH            a text file (ChatML ``<|im_start|>role`` blocks, or the whole file is the user turn)
    order: random | both   random: one judgment per item, model side drawn from the seed; both: model first, then second
    identical_outputs: tie       identical outputs are a tie without a judge call
    request: {max_tokens, temperature}
    verdict: {pattern, labels: {LABEL: {first: SCORE, weight: N}}, reply, truncated, case}
                             the LAST match of ``pattern`` in the judge's reply (group 1) is the verdict; a list
                             of patterns is tried in order (the first that matches decides); case: upper reads
                             the reply upper-cased (arena-hard-auto v2.0);
                             truncated: retry (default: a reply cut at max_tokens is asked again with a larger
                             budget, since its last tag may not be the final verdict) | accept (one-token replies)
    logprobs: {top_logprobs, first_token, second_token}   optional AlpacaEval-2.0 probability weighting
    instructions_hub / reference_hub: {id, config, split}  the public sets, loaded when no file is given
    category_templates: {CATEGORY: {system: ..., user: ...}}  another template for items of that category
    baselines: {CATEGORY: MODEL}   the reference model of each category (arena-hard-auto v2.0), looked up as
                                   MODEL.jsonl in a --reference directory

Placeholders in the template: ``{instruction}``, ``{output_1}``, ``{output_2}`` (arena-hard-auto's ``{question_1}``,
``{answer_1}``, ``{answer_2}`` are accepted too). They are filled in one pass, so text inside an output is never
substituted again.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from prefcli.errors import ConfigError
from prefcli.suggest import did_you_mean

PROTOCOL_DIR = Path(__file__).parent
_PLACEHOLDERS = {
    "instruction": "instruction", "question_1": "instruction", "QUESTION": "instruction",
    "output_1": "output_1", "answer_1": "output_1", "ANSWER_A": "output_1",
    "output_2": "output_2", "answer_2": "output_2", "ANSWER_B": "output_2",
}
_PLACEHOLDER_RE = re.compile(r"\{(" + "|".join(_PLACEHOLDERS) + r")\}")
_CHATML_RE = re.compile(r"<\|im_start\|>(system|user|assistant)\s*\n(.*?)<\|im_end\|>", re.DOTALL)


@dataclass(frozen=True)
class Verdict:
    """One parsed judgment: ``first`` is the score of the output shown first (1 win, 0.5 tie, 0 loss, or a
    probability when ``weighted``), counted ``weight`` times."""

    label: str
    first: float
    weight: int = 1
    weighted: bool = False


class MalformedScore(ValueError):
    """The judge's reply carries a score that cannot be a probability (NaN, infinite, positive or non-numeric
    log-prob): the judgment is failed (and retried on a rerun), never stored as a result."""


def checked_logprob(value, token: str) -> float:
    """``value`` as a finite log-prob (<= 0, with a little slack for rounding); MalformedScore otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise MalformedScore(f"malformed log-probs: log-prob of {token!r} is {value!r:.40}, not a number")
    value = float(value)
    if not math.isfinite(value) or value > 1e-6:
        raise MalformedScore(f"malformed log-probs: log-prob of {token!r} is {value!r}, not a finite value <= 0")
    return min(value, 0.0)


@dataclass
class Protocol:
    name: str
    version: int
    description: str
    system: str | None
    user: str
    order: str
    pattern: str
    labels: dict[str, dict]
    max_tokens: int
    temperature: float
    reply_format: str = "{label}"
    identical_outputs: str = "tie"
    logprobs: dict | None = None
    instructions_hub: dict | None = None
    reference_hub: dict | None = None
    source: str = ""
    template_source: str = ""  # the user's --judge-prompt file when it replaced the template
    accept_truncated: bool = False  # a reply cut at max_tokens may still carry the verdict (one-token replies)
    patterns: tuple[str, ...] = ()  # fallbacks after ``pattern``
    uppercase: bool = False
    category_templates: dict = field(default_factory=dict)  # category -> (system, user)
    baselines: dict = field(default_factory=dict)  # category -> reference model name
    _regex: re.Pattern = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.order not in ("random", "both"):
            raise ConfigError(f"{self.source}: order: must be 'random' or 'both', got {self.order!r}")
        self._regexes = []
        for pattern in (self.pattern, *self.patterns):
            try:
                regex = re.compile(pattern)
            except re.error as error:
                raise ConfigError(f"{self.source}: verdict.pattern: invalid regular expression: {error}") from None
            if regex.groups < 1:
                raise ConfigError(f"{self.source}: verdict.pattern: needs one capturing group (the label)")
            self._regexes.append(regex)
        self._regex = self._regexes[0]
        for label, spec in self.labels.items():
            if not isinstance(spec, dict) or not 0.0 <= float(spec.get("first", -1)) <= 1.0:
                raise ConfigError(f"{self.source}: verdict.labels.{label}: needs 'first' between 0 and 1")
        found = {_PLACEHOLDERS[name] for name in _PLACEHOLDER_RE.findall((self.system or "") + self.user)}
        missing = {"instruction", "output_1", "output_2"} - found
        if missing:
            raise ConfigError(f"{self.template_source or self.source}: template: missing placeholder(s) "
                              + ", ".join("{" + m + "}" for m in sorted(missing)))

    @property
    def template_version(self) -> str:
        """``NAME-vVERSION-HASH``: the hash covers everything that changes what the judge is asked or how its
        reply is read, so a changed template never reuses old judgments."""
        fields = [self.system, self.user, self.pattern, self.labels, self.logprobs, self.max_tokens,
                  self.temperature]
        if self.patterns or self.uppercase or self.category_templates:  # keeps older protocols' versions
            fields += [list(self.patterns), self.uppercase, self.category_templates]
        payload = json.dumps(fields, sort_keys=True, ensure_ascii=False)
        return f"{self.name}-v{self.version}-{hashlib.sha256(payload.encode()).hexdigest()[:10]}"

    def render(self, instruction: str, output_1: str, output_2: str, category: str | None = None) -> list[dict]:
        """The chat messages sent to the judge (the category's own template when the protocol has one)."""
        values = {"instruction": instruction, "output_1": output_1, "output_2": output_2}

        def fill(text: str) -> str:
            return _PLACEHOLDER_RE.sub(lambda match: values[_PLACEHOLDERS[match.group(1)]], text)

        system, user = self.category_templates.get(category, (self.system, self.user))
        messages = [{"role": "system", "content": fill(system)}] if system else []
        messages.append({"role": "user", "content": fill(user)})
        return messages

    def parse(self, text: str | None, top_logprobs: list[dict] | None = None) -> Verdict | None:
        """Read the judge's reply (never the outputs): the logprob-weighted preference when the protocol asks
        for it and the endpoint returned the tokens, else the last verdict tag in ``text``; None if neither.
        Raises :class:`MalformedScore` when the log-probs of the verdict tokens are not finite numbers <= 0."""
        if self.logprobs and top_logprobs:
            verdict = self._parse_logprobs(top_logprobs)
            if verdict is not None:
                return verdict
        text = (text or "").upper() if self.uppercase else (text or "")
        matches = []
        for regex in self._regexes:
            matches = [m if isinstance(m, str) else m[0] for m in regex.findall(text)]
            matches = [m for m in matches if m != ""]
            if matches:
                break
        if not matches:
            return None
        last = matches[-1]
        spec = self.labels.get(last)
        if spec is None:
            return None
        return Verdict(label=last, first=float(spec["first"]), weight=int(spec.get("weight", 1)))

    def _parse_logprobs(self, top_logprobs: list[dict]) -> Verdict | None:
        """AlpacaEval 2.0's weighting: P(first) = p(first_token) / (p(first_token) + p(second_token)) over the
        first generated token's top log-probs (variants with surrounding spaces are pooled; a token missing from
        the top-k has probability 0)."""
        first_token, second_token = self.logprobs["first_token"], self.logprobs["second_token"]
        pooled: dict[str, list[float]] = {first_token: [], second_token: []}
        for entry in top_logprobs:
            if not isinstance(entry, dict):
                raise MalformedScore(f"malformed log-probs: entry {entry!r:.60} is not an object")
            token = str(entry.get("token", "")).strip()
            if token in pooled and entry.get("logprob") is not None:
                pooled[token].append(checked_logprob(entry["logprob"], token))
        if not pooled[first_token] and not pooled[second_token]:
            return None
        p_first = sum(math.exp(lp) for lp in pooled[first_token])
        p_second = sum(math.exp(lp) for lp in pooled[second_token])
        if p_first + p_second <= 0.0:
            return None
        share = p_first / (p_first + p_second)
        return Verdict(label=f"p({first_token})={share:.4f}", first=share, weight=1, weighted=True)

    def reply_for(self, first: float, strong: bool = False) -> str:
        """A reply in this protocol's vocabulary meaning ``first`` (used by the built-in demo judge)."""
        candidates = [label for label, spec in self.labels.items() if float(spec["first"]) == first]
        if not candidates:
            candidates = sorted(self.labels, key=lambda label: abs(float(self.labels[label]["first"]) - first))[:1]
        chosen = sorted(candidates, key=lambda label: int(self.labels[label].get("weight", 1)), reverse=strong)[0]
        return self.reply_format.format(label=chosen)


def list_protocols() -> list[str]:
    """Names of the built-in protocols."""
    return sorted(path.stem for path in PROTOCOL_DIR.glob("*.yaml"))


def load_protocol(name_or_path: str | Path, judge_prompt: str | Path | None = None) -> Protocol:
    """A protocol by built-in name (``alpaca``, ``arena``) or YAML path; ``judge_prompt`` replaces its template
    with a user's file (YAML with ``system``/``user``, ChatML text, or plain text = the user turn)."""
    import yaml

    path = Path(name_or_path)
    if not (path.suffix in (".yaml", ".yml") or path.exists()):
        path = PROTOCOL_DIR / f"{name_or_path}.yaml"
        if not path.exists():
            hint = did_you_mean(str(name_or_path), list_protocols(), n=3, cutoff=0.4).strip()
            raise ConfigError(f"unknown protocol {str(name_or_path)!r} (built-in: {', '.join(list_protocols())})"
                              + (f"; {hint}" if hint else ""))
    if not path.exists():
        raise ConfigError(f"{path}: protocol file not found")
    try:
        spec = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML: {error}") from None
    known = {"name", "version", "description", "template", "order", "identical_outputs", "request", "verdict",
             "logprobs", "instructions_hub", "reference_hub", "category_templates", "baselines"}
    unknown = sorted(set(spec) - known)
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})")
    for key in ("name", "template", "verdict"):
        if key not in spec:
            raise ConfigError(f"{path}: {key}: missing")
    if judge_prompt is not None:
        system, user = read_judge_prompt(judge_prompt)
    else:
        system, user = _template_from_spec(spec["template"], path)
    verdict, request = spec["verdict"], spec.get("request") or {}
    if "pattern" not in verdict or not verdict.get("labels"):
        raise ConfigError(f"{path}: verdict: needs 'pattern' and 'labels'")
    patterns = verdict["pattern"] if isinstance(verdict["pattern"], list) else [verdict["pattern"]]
    if not patterns or verdict.get("case", "as-is") not in ("as-is", "upper"):
        raise ConfigError(f"{path}: verdict: 'pattern' must be a pattern or a list of them, 'case' as-is or upper")
    category_templates = {}
    if judge_prompt is None:  # a user's --judge-prompt replaces every template
        for category, template in (spec.get("category_templates") or {}).items():
            system_c, user_c = _template_from_spec(template, path) if "user" in template or "file" in template \
                else (template.get("system"), user)
            category_templates[str(category)] = (system_c, user_c)
    return Protocol(
        name=str(spec["name"]), version=int(spec.get("version", 1)), description=str(spec.get("description", "")),
        system=system, user=user, order=str(spec.get("order", "random")), pattern=str(patterns[0]),
        patterns=tuple(str(p) for p in patterns[1:]), uppercase=verdict.get("case") == "upper",
        category_templates=category_templates, baselines=dict(spec.get("baselines") or {}),
        labels={str(k): dict(v) for k, v in verdict["labels"].items()},
        reply_format=str(verdict.get("reply", "{label}")),
        max_tokens=int(request.get("max_tokens", 1024)), temperature=float(request.get("temperature", 0.0)),
        identical_outputs=str(spec.get("identical_outputs", "tie")), logprobs=spec.get("logprobs"),
        instructions_hub=spec.get("instructions_hub"), reference_hub=spec.get("reference_hub"), source=str(path),
        template_source=str(judge_prompt) if judge_prompt is not None else "",
        accept_truncated=_truncated_policy(verdict.get("truncated", "retry"), path),
    )


def _truncated_policy(value, source: Path) -> bool:
    if value not in ("retry", "accept"):
        raise ConfigError(f"{source}: verdict.truncated: must be 'retry' or 'accept', got {value!r}")
    return value == "accept"


def read_judge_prompt(path: str | Path) -> tuple[str | None, str]:
    """(system, user) from a judge prompt file: YAML with ``system``/``user`` (or arena-hard-auto's
    ``system_prompt``/``prompt_template``), ChatML text, or plain text (the user turn)."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: judge prompt file not found")
    text = path.read_text(encoding="utf-8")
    if path.suffix in (".yaml", ".yml"):
        try:
            spec = yaml.safe_load(text) or {}
        except yaml.YAMLError as error:
            raise ConfigError(f"{path}: not valid YAML: {error}") from None
        system = spec.get("system", spec.get("system_prompt"))
        user = spec.get("user", spec.get("prompt_template"))
        if isinstance(user, list):  # arena-hard-auto stores a one-element list
            user = user[0] if user else None
        if not isinstance(user, str):
            raise ConfigError(f"{path}: user: missing (the judge's user message template)")
        return system, user
    return _split_chatml(text)


def _split_chatml(text: str) -> tuple[str | None, str]:
    blocks = _CHATML_RE.findall(text)
    if not blocks:
        return None, text
    system = "\n".join(body.strip() for role, body in blocks if role == "system") or None
    user = "\n".join(body.strip() for role, body in blocks if role != "system")
    return system, user


def _template_from_spec(template: dict, source: Path) -> tuple[str | None, str]:
    if not isinstance(template, dict):
        raise ConfigError(f"{source}: template: expected a mapping")
    if "alpaca_eval" in template:
        return _split_chatml(alpaca_eval_prompt(str(template["alpaca_eval"])))
    if "file" in template:
        file = (source.parent / template["file"]).resolve()
        if not file.is_file():
            raise ConfigError(f"{source}: template.file: {file} not found")
        return _split_chatml(file.read_text(encoding="utf-8"))
    if "user" not in template:
        raise ConfigError(f"{source}: template: needs 'alpaca_eval', 'file' or 'user'")
    return template.get("system"), str(template["user"])


def alpaca_eval_prompt(config_name: str) -> str:
    """The prompt text of an evaluator config shipped by the installed alpaca-eval package (read from its
    ``evaluators_configs`` directory without importing the package)."""
    import yaml

    spec = importlib.util.find_spec("alpaca_eval")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("the AlpacaEval protocol reads its judge prompt from the alpaca-eval package: "
                          "pip install 'prefcli[eval]'")
    configs_dir = Path(next(iter(spec.submodule_search_locations))) / "evaluators_configs"
    config_file = configs_dir / config_name / "configs.yaml"
    if not config_file.is_file():
        raise ConfigError(f"alpaca-eval has no evaluator config {config_name!r} ({config_file} not found)")
    config = yaml.safe_load(config_file.read_text(encoding="utf-8"))[config_name]
    return (configs_dir / config["prompt_template"]).read_text(encoding="utf-8")
