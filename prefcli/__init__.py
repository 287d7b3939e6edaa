"""prefcli: preference optimization of language models (DPO family, AOT, MC-PO) with judged evaluation."""

__version__ = "0.1.0"
