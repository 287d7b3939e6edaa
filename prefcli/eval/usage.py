"""What the judge calls of one run cost: prompt and completion tokens (from each response's ``usage``), the judge's
``system_fingerprint`` values, replies retried with a larger budget, and a cost estimate from per-million-token
prices. Only calls made by this run count; judgments reused from the store cost nothing now."""

from __future__ import annotations


def usage_summary(results, *, price_in: float | None = None, price_out: float | None = None) -> dict:
    """``{"prompt_tokens", "completion_tokens", "system_fingerprints", "budget_raised", "cost_usd"}`` over
    ``results`` (JudgmentResult); ``cost_usd`` is None unless both prices (USD per million tokens) are given."""
    prompt_tokens = completion_tokens = budget_raised = 0
    fingerprints: list[str] = []
    for result in results:
        usage = getattr(result, "usage", None)
        if not usage:
            continue
        prompt_tokens += usage.get("prompt_tokens") or 0
        completion_tokens += usage.get("completion_tokens") or 0
        budget_raised += usage.get("budget_raised_to") is not None
        for fingerprint in usage.get("fingerprints") or []:
            if fingerprint not in fingerprints:
                fingerprints.append(fingerprint)
    cost = None
    if price_in is not None and price_out is not None:
        cost = round((prompt_tokens * price_in + completion_tokens * price_out) / 1e6, 6)
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "system_fingerprints": fingerprints, "budget_raised": budget_raised, "cost_usd": cost,
            "price_in_per_mtok": price_in, "price_out_per_mtok": price_out}
