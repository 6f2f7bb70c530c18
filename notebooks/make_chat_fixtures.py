"""Chat-template cases for captag's minijinja rendering (src/text/chat.rs, tests in
src/text/chat_tests.rs): each template rendered by `transformers`' own
`apply_chat_template(messages, tokenize=False, add_generation_prompt=...)`.

Writes tests/fixtures/chat/cases.json — `[{"name", "template", "specials", "messages",
"add_generation_prompt", "expected"}]` — and gives the tiny parity folders a chat template in a
`tokenizer_config.json` (tests/fixtures/hf/llama: SmolLM2's ChatML as its GGUF file ships it;
tests/fixtures/hf/qwen2: Qwen2.5's, tools left out) so captag reads them as from a download.

    /tmp/venv-gpt2lm/bin/python notebooks/make_chat_fixtures.py
(transformers 5.25.0 and jinja2 3.1.6 were used for the committed files.)
"""
import json
from pathlib import Path

from tokenizers import Tokenizer
from tokenizers.models import WordLevel
from transformers import PreTrainedTokenizerFast

ROOT = Path(__file__).resolve().parent.parent / "tests" / "fixtures"

# SmolLM2-135M-Instruct's template, verbatim from its GGUF file (`tokenizer.chat_template`).
SMOLLM2 = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face"
    "<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + "
    "'<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}"
    "{% endif %}"
)

QWEN2 = """{%- if messages[0]['role'] == 'system' %}
    {{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}
{%- else %}
    {{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\\n' }}
{%- endif %}
{%- for message in messages %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) or (message.role == "assistant") %}
        {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\\n' }}
{%- endif %}
"""

LLAMA3 = (
    "{{- bos_token }}{% for message in messages %}{{ '<|start_header_id|>' + message['role'] + "
    "'<|end_header_id|>\n\n' + message['content'] | trim + '<|eot_id|>' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)

# Block tags on their own lines (trim_blocks / lstrip_blocks), Python string methods,
# namespace(), loop variables and raise_exception in a branch that is not taken.
BLOCKS = """{% set ns = namespace(users=0) %}
{% for message in messages %}
  {% if message.role == 'system' %}
<<SYS>>{{ message.content.strip() }}<</SYS>>
  {% elif message.role not in ['user', 'assistant'] %}
{{ raise_exception('unknown role ' + message.role) }}
  {% else %}
    {% if message.role == 'user' %}{% set ns.users = ns.users + 1 %}{% endif %}
[{{ message.role | upper }} {{ loop.index }}/{{ loop.length }}] {{ message.content.replace('\\n', ' ') }}{% if message.content.startswith('#') %} (tag){% endif %}

  {% endif %}
{% endfor %}
{% if add_generation_prompt %}
[ASSISTANT after {{ ns.users }} user turns]{{ eos_token }}
{% endif %}"""

CONVERSATIONS = [
    [{"role": "user", "content": "Write a caption for a photo of a beach at sunset."}],
    [
        {"role": "system", "content": "  You write Instagram captions with hashtags and emoji.  "},
        {"role": "user", "content": "A dog on a red sofa\nmood: cozy, warm"},
    ],
    [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "#coffee morning ☕"},
        {"role": "assistant", "content": "Monday fuel ☕✨ #coffee #mornings"},
        {"role": "user", "content": "Again, with more energy!  "},
    ],
]


def tokenizer():
    vocab = {t: i for i, t in enumerate(["<unk>", "<s>", "</s>", "<|im_end|>", "hello"])}
    return PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer(WordLevel(vocab, unk_token="<unk>")),
        bos_token="<s>", eos_token="</s>", unk_token="<unk>",
    )


def main():
    tok = tokenizer()
    specials = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}
    cases = []
    for name, template in [("smollm2", SMOLLM2), ("qwen2", QWEN2), ("llama3", LLAMA3), ("blocks", BLOCKS)]:
        for i, messages in enumerate(CONVERSATIONS):
            for gen in (True, False):
                text = tok.apply_chat_template(messages, chat_template=template, tokenize=False,
                                               add_generation_prompt=gen)
                cases.append({"name": f"{name}/{i}/{'open' if gen else 'closed'}", "template": template,
                              "specials": specials, "messages": messages,
                              "add_generation_prompt": gen, "expected": text})
    (ROOT / "chat").mkdir(parents=True, exist_ok=True)
    (ROOT / "chat" / "cases.json").write_text(json.dumps(cases, indent=1, ensure_ascii=False) + "\n")
    for folder, template in [("llama", SMOLLM2), ("qwen2", QWEN2)]:
        cfg = {"bos_token": "<|im_start|>", "eos_token": "<|im_end|>", "chat_template": template}
        (ROOT / "hf" / folder / "tokenizer_config.json").write_text(json.dumps(cfg, indent=2) + "\n")
    print(len(cases), "cases;", cases[3]["expected"][:200])


if __name__ == "__main__":
    main()
