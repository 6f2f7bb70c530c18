"""Tiny Marian, M2M100 and NLLB-architecture translation folders and `transformers`' outputs for
captag's translation parity tests (src/text/spm.rs, src/model/seq2seq/tests.rs,
tests/integration/translate.rs).

Writes, under tests/fixtures/hf/:
  marian/  MarianMTModel (post-norm, SiLU, tied head, final_logits_bias) with source.spm
           (Unigram, English) and target.spm (Unigram, Hindi), a shared vocab.json and
           tokenizer_config.json, as `save_pretrained` writes a Helsinki-NLP/opus-mt folder.
  m2m100/  M2M100ForConditionalGeneration (pre-norm, ReLU, positions offset by 2) with
           sentencepiece.bpe.model (BPE) + vocab.json, `__xx__` language tokens.
  nllb/    the same architecture (GELU, untied head) with NLLB's tokenizer.json
           (NllbTokenizerFast: `eng_Latn … </s>`, `hin_Deva` forced first).
each with generation_config.json and expected.json: for every caption in CASES the input ids,
greedy and beam-4 ids and texts (`generate` with the folder's generation_config), and
expected.safetensors: encoder states and decoder logits of the first two captions (teacher
forced on the greedy output). The SentencePiece models are trained here on the few hundred
lines below (English captions and Hindi sentences written for this script); weights are random
with std 0.3 so outputs are far from uniform.

    /tmp/venv-gpt2lm/bin/python notebooks/make_translation_fixtures.py
(transformers 5.25.0, torch 2.11.0, sentencepiece 0.2.3, protobuf, no sacremoses: Marian's
punctuation normaliser is then the identity, which captag also applies.)
"""
import io
import json
import shutil
from pathlib import Path

import sentencepiece as spm
import torch
from safetensors.torch import save_file
from transformers import (
    GenerationConfig,
    M2M100Config,
    M2M100ForConditionalGeneration,
    M2M100Tokenizer,
    MarianConfig,
    MarianMTModel,
    MarianTokenizer,
    NllbTokenizer,
)

OUT = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "hf"
TMP = Path("/tmp/captag-mt-fixtures")

ENGLISH = """a dog runs on the beach
two children play football in the park
a man rides a bicycle down the street
a woman in a red dress walks her dog
a group of people stand outside a building
the sun sets over the mountains
a cat sleeps on the sofa
three friends laugh at a cafe table
a boy jumps into the swimming pool
a girl reads a book under a tree
a black and white dog catches a frisbee
people walk along a busy market street
a train crosses a bridge over the river
a small boat sails on the lake
coffee and cake on a wooden table
happy birthday to my best friend
sunset at the beach with friends
morning walk in the city
the food was delicious tonight
a bird sits on a branch
two dogs play in the snow
a man climbs a rocky mountain
children smile for the camera
a family has a picnic in the garden
fresh flowers in the morning light
a cyclist races on the road
the old temple in the evening
a crowd watches a street performer
a baby laughs with her mother
the city lights at night
we love travel and good food
summer holidays with the family
a red car parked near the sea
rain on the window this evening
a puppy plays with a ball
my first marathon, 42 km done!
best day ever with 3 friends :)
weekend vibes at the lake
a new recipe for dinner tonight
love this view of the hills
"""

HINDI = """एक कुत्ता समुद्र तट पर दौड़ता है
दो बच्चे पार्क में फुटबॉल खेलते हैं
एक आदमी सड़क पर साइकिल चलाता है
लाल पोशाक में एक महिला अपने कुत्ते को घुमाती है
लोगों का एक समूह इमारत के बाहर खड़ा है
पहाड़ों के ऊपर सूरज डूबता है
एक बिल्ली सोफे पर सोती है
तीन दोस्त कैफे की मेज पर हंसते हैं
एक लड़का स्विमिंग पूल में कूदता है
एक लड़की पेड़ के नीचे किताब पढ़ती है
लोग व्यस्त बाजार की सड़क पर चलते हैं
एक ट्रेन नदी के ऊपर पुल पार करती है
झील पर एक छोटी नाव चलती है
लकड़ी की मेज पर कॉफी और केक
मेरे सबसे अच्छे दोस्त को जन्मदिन की शुभकामनाएं
दोस्तों के साथ समुद्र तट पर सूर्यास्त
शहर में सुबह की सैर
आज रात खाना बहुत स्वादिष्ट था
एक पक्षी डाल पर बैठा है
दो कुत्ते बर्फ में खेलते हैं
बच्चे कैमरे के लिए मुस्कुराते हैं
एक परिवार बगीचे में पिकनिक मनाता है
सुबह की रोशनी में ताजे फूल
शाम को पुराना मंदिर
रात में शहर की रोशनी
हमें यात्रा और अच्छा खाना पसंद है
परिवार के साथ गर्मी की छुट्टियां
आज शाम खिड़की पर बारिश
एक पिल्ला गेंद से खेलता है
झील पर सप्ताहांत
पहाड़ियों का यह दृश्य बहुत सुंदर है
प्यार खुशी यात्रा प्रकृति भोजन दोस्त परिवार
"""

# English captions as captag writes them: punctuation, numbers, emoji, hashtags.
CASES = [
    "a dog runs on the beach.",
    "Two children play football in the park, 3 friends watch!",
    "Sunset at the beach 🌅 with friends #travel #sunset",
    "my first marathon: 42 km in 4:05 — done 💪",
    "a cat sleeps on the sofa",
    "#food #love",
]
WORDS = ["travel", "sunset", "food", "love", "beach"]


def train_spm(lines, model_type, vocab_size, **extra):
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines * 4),
        model_writer=buf,
        model_type=model_type,
        vocab_size=vocab_size,
        hard_vocab_limit=False,
        character_coverage=1.0,
        **extra,
    )
    return buf.getvalue()


def scramble(model, seed=2):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "embed_positions" in name:
                continue  # Marian's sinusoidal table is a frozen parameter rebuilt on load
            if "layer_norm" in name and name.endswith("weight"):
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=g))
            elif name.endswith("bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.3 * torch.randn(p.shape, generator=g))
        if hasattr(model, "final_logits_bias"):
            model.final_logits_bias.copy_(0.5 * torch.randn(model.final_logits_bias.shape, generator=g))
        # Make `</s>` likely enough that some outputs end before max_length (finished beams).
        eos = model.config.eos_token_id
        if hasattr(model, "final_logits_bias"):
            model.final_logits_bias[0, eos] += 5.0
        else:
            model.get_output_embeddings().weight[eos] *= 4.0 if model.config.tie_word_embeddings is False else 9.0


def outputs(name, model, tok, gen, forced_bos=None):
    """Runs `transformers` on CASES and WORDS, writes expected.json and expected.safetensors."""
    folder = OUT / name
    model.generation_config = gen
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    for junk in ["special_tokens_map.json", "added_tokens.json", "chat_template.jinja"]:
        (folder / junk).unlink(missing_ok=True)
    cases = []
    tensors = {}
    with torch.no_grad():
        for i, text in enumerate(CASES + WORDS):
            enc = tok(text, return_tensors="pt")
            greedy = model.generate(**enc, num_beams=1, do_sample=False)
            beam = model.generate(**enc, num_beams=4, do_sample=False)
            cases.append({
                "text": text,
                "ids": enc["input_ids"][0].tolist(),
                "greedy": greedy[0].tolist(),
                "greedy_text": tok.decode(greedy[0], skip_special_tokens=True),
                "beam": beam[0].tolist(),
                "beam_text": tok.decode(beam[0], skip_special_tokens=True),
            })
            if i < 2:
                out = model(**enc, decoder_input_ids=greedy)
                tensors[f"encoder_{i}"] = out.encoder_last_hidden_state[0].contiguous()
                tensors[f"logits_{i}"] = out.logits[0].contiguous()
        # A right-padded batch of three captions (as the tokenizer pads them).
        batch = tok(CASES[:3], return_tensors="pt", padding=True)
        bg = model.generate(**batch, num_beams=1, do_sample=False)
        bb = model.generate(**batch, num_beams=4, do_sample=False)
    decode = [tok.decode([i]) for i in cases[2]["ids"]]
    meta = {
        "cases": cases,
        "batch": {"texts": CASES[:3], "greedy": bg.tolist(), "beam": bb.tolist()},
        "pieces_of_case_2": decode,
        "forced_bos_token_id": forced_bos,
    }
    (folder / "expected.json").write_text(json.dumps(meta, ensure_ascii=False, indent=1) + "\n")
    save_file(tensors, folder / "expected.safetensors")


def marian():
    src = train_spm(ENGLISH.splitlines(), "unigram", 180)
    tgt = train_spm(HINDI.splitlines(), "unigram", 180)
    d = TMP / "marian"
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    (d / "source.spm").write_bytes(src)
    (d / "target.spm").write_bytes(tgt)
    pieces = []
    for blob in (src, tgt):
        sp = spm.SentencePieceProcessor(model_proto=blob)
        pieces += [sp.id_to_piece(i) for i in range(sp.get_piece_size())]
    vocab = {"</s>": 0, "<unk>": 1}
    for p in pieces:
        if p not in vocab and p not in ("<s>", "<unk>", "</s>", "<pad>"):
            vocab[p] = len(vocab)
    vocab["<pad>"] = len(vocab)
    (d / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    (d / "tokenizer_config.json").write_text(json.dumps({
        "source_lang": "en", "target_lang": "hi", "model_max_length": 512,
        "tokenizer_class": "MarianTokenizer", "separate_vocabs": False,
    }))
    tok = MarianTokenizer.from_pretrained(d)
    pad = vocab["<pad>"]
    cfg = MarianConfig(
        vocab_size=len(vocab), d_model=32, encoder_layers=2, decoder_layers=2,
        encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64,
        max_position_embeddings=64, pad_token_id=pad, eos_token_id=0, decoder_start_token_id=pad,
        activation_function="swish", scale_embedding=True, share_encoder_decoder_embeddings=True,
    )
    torch.manual_seed(0)
    model = MarianMTModel(cfg).eval()
    scramble(model)
    gen = GenerationConfig(
        bad_words_ids=[[pad]], decoder_start_token_id=pad, eos_token_id=0, pad_token_id=pad,
        forced_eos_token_id=0, max_length=24, num_beams=4, renormalize_logits=True,
    )
    outputs("marian", model, tok, gen)
    for f in ["source.spm", "target.spm"]:
        shutil.copy(d / f, OUT / "marian" / f)


def m2m100_spm():
    return train_spm(ENGLISH.splitlines() + HINDI.splitlines(), "bpe", 260)


def m2m100():
    blob = m2m100_spm()
    d = TMP / "m2m100"
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    (d / "sentencepiece.bpe.model").write_bytes(blob)
    sp = spm.SentencePieceProcessor(model_proto=blob)
    # fairseq's dictionary: <s> <pad> </s> <unk>, then the pieces (offset by one).
    vocab = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3}
    for i in range(sp.get_piece_size()):
        p = sp.id_to_piece(i)
        if p not in vocab:
            vocab[p] = len(vocab)
    (d / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    (d / "tokenizer_config.json").write_text(json.dumps({
        "src_lang": "en", "tgt_lang": "hi", "tokenizer_class": "M2M100Tokenizer", "num_madeup_words": 8,
    }))
    tok = M2M100Tokenizer.from_pretrained(d, src_lang="en", tgt_lang="hi")
    hi = tok.get_lang_id("hi")
    cfg = M2M100Config(
        vocab_size=len(vocab) + 100 + 8, d_model=32, encoder_layers=2, decoder_layers=2,
        encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64,
        max_position_embeddings=64, activation_function="relu", scale_embedding=True,
        pad_token_id=1, bos_token_id=0, eos_token_id=2, decoder_start_token_id=2,
    )
    torch.manual_seed(0)
    model = M2M100ForConditionalGeneration(cfg).eval()
    scramble(model, seed=3)
    gen = GenerationConfig(
        decoder_start_token_id=2, eos_token_id=2, pad_token_id=1, bos_token_id=0, max_length=24,
        num_beams=4, early_stopping=True, forced_bos_token_id=hi, no_repeat_ngram_size=3,
        length_penalty=1.3,
    )
    outputs("m2m100", model, tok, gen, forced_bos=hi)
    shutil.copy(d / "sentencepiece.bpe.model", OUT / "m2m100" / "sentencepiece.bpe.model")


def nllb():
    blob = m2m100_spm()
    d = TMP / "nllb"
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    (d / "sentencepiece.bpe.model").write_bytes(blob)
    (d / "tokenizer_config.json").write_text(json.dumps({
        "src_lang": "eng_Latn", "tgt_lang": "hin_Deva", "tokenizer_class": "NllbTokenizer",
    }))
    from transformers.convert_slow_tokenizer import NllbConverter  # noqa: F401 (needs protobuf)
    from transformers.models.nllb.tokenization_nllb import FAIRSEQ_LANGUAGE_CODES

    tok = NllbTokenizer.from_pretrained(
        d, src_lang="eng_Latn", tgt_lang="hin_Deva", extra_special_tokens=FAIRSEQ_LANGUAGE_CODES
    )
    (d / "sentencepiece.bpe.model").unlink()
    hin = tok.convert_tokens_to_ids("hin_Deva")
    cfg = M2M100Config(
        vocab_size=len(tok), d_model=32, encoder_layers=2, decoder_layers=2,
        encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64,
        max_position_embeddings=64, activation_function="gelu", scale_embedding=True,
        pad_token_id=1, bos_token_id=0, eos_token_id=2, decoder_start_token_id=2,
        tie_word_embeddings=False,
    )
    torch.manual_seed(0)
    model = M2M100ForConditionalGeneration(cfg).eval()
    scramble(model, seed=4)
    gen = GenerationConfig(
        decoder_start_token_id=2, eos_token_id=2, pad_token_id=1, bos_token_id=0, max_length=24,
        num_beams=4, forced_bos_token_id=hin, length_penalty=0.7,
    )
    outputs("nllb", model, tok, gen, forced_bos=hin)
    (OUT / "nllb" / "sentencepiece.bpe.model").unlink(missing_ok=True)


if __name__ == "__main__":
    import sys

    names = sys.argv[1:] or ["marian", "m2m100", "nllb"]
    for name in names:
        globals()[name]()
    for name in names:
        for f in sorted((OUT / name).iterdir()):
            print(f, f.stat().st_size)
