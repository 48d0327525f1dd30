"""Load an exported model directory with Hugging Face `transformers` and continue a prompt
greedily, with `model.generate` and with `pipeline("text-generation")`.

usage: hf_generate.py HF_DIR PROMPT MAX_NEW_TOKENS

Prints JSON: the prompt's token ids, the new ids, the pipeline's continuation text and the
loaded model's class. Runs offline, on the CPU, in float32.
"""
import json
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch  # noqa: E402
from transformers import AutoModelForCausalLM, AutoTokenizer, pipeline  # noqa: E402


def main() -> None:
    hf_dir, prompt, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    torch.set_num_threads(1)
    tok = AutoTokenizer.from_pretrained(hf_dir)
    model = AutoModelForCausalLM.from_pretrained(hf_dir, dtype=torch.float32)
    model.eval()
    ids = tok(prompt, return_tensors="pt").input_ids
    with torch.no_grad():
        out = model.generate(ids, do_sample=False, max_new_tokens=n)
    pipe = pipeline("text-generation", model=model, tokenizer=tok, device="cpu")
    text = pipe(prompt, do_sample=False, max_new_tokens=n, return_full_text=False)
    print(json.dumps({
        "prompt_ids": ids[0].tolist(),
        "ids": out[0, ids.shape[1]:].tolist(),
        "text": text[0]["generated_text"],
        "class": type(model).__name__,
    }))


if __name__ == "__main__":
    main()
