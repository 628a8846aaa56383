#!/usr/bin/env python3
"""Hugging Face transformers `generate` on the GPU machine's python3, random weights of a real
shape, bf16, static cache: decode tokens/s for a batch and context, to set beside
kvserve-bench-engine's figures for the same shape and batch (issue 7).

  python3 bench/hf_baseline.py --model llama-3-8b --cases 1x4096,64x512 --new-tokens 64

Decode tokens/s = batch * (N - 1) / (time of generate(N) - time of generate(1)), medians of
--repeats runs after a warm-up, timed with CUDA events; the prefill cancels out.
"""
import argparse
import json
import statistics

import torch
import transformers
from transformers import LlamaConfig, LlamaForCausalLM

SHAPES = {
    "llama-3-8b": dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                       num_attention_heads=32, num_key_value_heads=8, vocab_size=128256,
                       max_position_embeddings=8192, rope_theta=500000.0),
    "llama-2-7b": dict(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                       num_attention_heads=32, num_key_value_heads=32, vocab_size=32000,
                       max_position_embeddings=4096),
}


def timed_generate(model, ids, new_tokens, cache):
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    kwargs = dict(max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
                  pad_token_id=0)
    if cache:
        kwargs["cache_implementation"] = cache
    start.record()
    model.generate(ids, **kwargs)
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="llama-3-8b", choices=sorted(SHAPES))
    parser.add_argument("--cases", default="1x4096,64x512", help="BATCHxCONTEXT,...")
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json-out", default="")
    args = parser.parse_args()
    torch.manual_seed(0)
    torch.set_default_dtype(torch.bfloat16)
    config = LlamaConfig(**SHAPES[args.model])
    with torch.device("cuda"):
        model = LlamaForCausalLM(config).eval()
    rows = []
    print(f"transformers {transformers.__version__}, torch {torch.__version__}")
    print("| model | batch | context | cache | decode ms/step | tokens/s |\n|---|---|---|---|---|---|")
    for case in args.cases.split(","):
        batch, context = (int(x) for x in case.split("x"))
        ids = torch.randint(3, config.vocab_size, (batch, context), device="cuda")
        cache = "static"
        with torch.inference_mode():
            try:
                timed_generate(model, ids, 2, cache)  # warm-up
            except Exception as error:  # an older or newer generate without this cache
                print(f"static cache unavailable ({error}); using the default cache")
                cache = None
                timed_generate(model, ids, 2, cache)
            one = statistics.median(timed_generate(model, ids, 1, cache) for _ in range(args.repeats))
            many = statistics.median(
                timed_generate(model, ids, args.new_tokens, cache) for _ in range(args.repeats))
        step_ms = (many - one) / (args.new_tokens - 1)
        tokens_per_s = 1000.0 * batch / step_ms
        rows.append(dict(model=args.model, batch=batch, context=context, cache=cache or "dynamic",
                         step_ms=step_ms, tokens_per_s=tokens_per_s))
        print(f"| {args.model} | {batch} | {context} | {cache or 'dynamic'} | {step_ms:.2f} | "
              f"{tokens_per_s:.0f} |", flush=True)
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
