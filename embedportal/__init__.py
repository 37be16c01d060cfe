"""embedportal: an operations portal for embedding ingestion pipelines."""

import os

# Set before anything imports LiteLLM or Hugging Face libraries: no network at import or run time.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
