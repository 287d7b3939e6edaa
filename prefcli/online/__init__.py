"""Online preference optimization (OnMC-PO, online DPO): candidate sets sampled from the current policy, ranked by a
judge, and the batched online training loop that regenerates them between segments.

MC-PO paper (arXiv 2502.04567), Sec. 3.2 and App. B "batched online setup": sample completions from the policy at
several temperatures (two each at 0.6, 0.8, 1.0), find the preferred one by iterative pairwise ranking with a judge
(Chen et al., 2024b: n - 1 comparisons), train on (winner, the rest) for one segment of the training steps, then
regenerate with the updated checkpoint; the reference stays the initial policy.

>>> from prefcli.settings import load_settings
>>> from prefcli.online.loop import run_online
>>> summary = run_online(load_settings("examples/online-onmcpo-llama31-8b-instruct.yaml"))
"""
