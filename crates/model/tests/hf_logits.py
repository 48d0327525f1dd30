"""Load a checkpoint directory with Hugging Face `LlamaForCausalLM` and write its logits.

usage: hf_logits.py CHECKPOINT_DIR TOKENS_JSON OUT_BIN

TOKENS_JSON holds {"batch": B, "tokens": [...B*T ids...]}; OUT_BIN receives the logits
[B, T, vocab] as little-endian float32, row-major. Runs offline, on the CPU, in float32.
"""
import json
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from transformers import LlamaForCausalLM  # noqa: E402


def main() -> None:
    ckpt, tokens_path, out_path = sys.argv[1:4]
    with open(tokens_path) as f:
        spec = json.load(f)
    batch = spec["batch"]
    ids = torch.tensor(spec["tokens"], dtype=torch.long).view(batch, -1)
    torch.set_num_threads(1)
    model = LlamaForCausalLM.from_pretrained(ckpt, dtype=torch.float32, attn_implementation="eager")
    model.eval()
    if model.config.tie_word_embeddings:
        assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr(), "not tied"
    with torch.no_grad():
        logits = model(input_ids=ids).logits.float().contiguous()
    logits.numpy().astype("<f4").tofile(out_path)
    print(json.dumps({"shape": list(logits.shape), "n_params": sum(p.numel() for p in model.parameters())}))


if __name__ == "__main__":
    main()
