"""Encoders and the embedding cache; a real tiny open_clip model through all four tasks."""

from __future__ import annotations

from pathlib import Path
from unittest import mock

import numpy as np
import pandas as pd
import pytest
from test_tasks import DesignedEncoder, designed_set

from xlr.config import EvalSection, SyntheticSection, TinyModelSection
from xlr.data.imagetext import ArrayImages, ImageTextSet
from xlr.data.synthetic import generate_corpus, lexicon_words, load_pool
from xlr.eval.encoders import (
    EmbeddingKey,
    Encoder,
    ModelEncoder,
    cached_embeddings,
    set_fingerprint,
    state_dict_hash,
)
from xlr.eval.results import RANK_COLUMNS, RESULT_COLUMNS, write_results
from xlr.eval.runner import languages_in
from xlr.eval.search import relevant_ranks
from xlr.eval.tasks import evaluate_arm
from xlr.models.factory import load_model, write_tiny_model_dir
from xlr.models.tokenizer import build_tokenizer

SEEN, HELDOUT = ["en", "de"], ["fr", "ru"]
TINY = TinyModelSection(context_length=16, vocab_size=400)


def test_designed_encoder_satisfies_the_protocol() -> None:
    encoder: Encoder = DesignedEncoder()  # a static check; the runtime check is duck typing
    assert encoder.checkpoint == "designedckpt"


@pytest.mark.filterwarnings("ignore:designed. multilingual_seen skipped")
def test_cache_avoids_re_encoding(tmp_path: Path) -> None:
    encoder = DesignedEncoder()
    first = evaluate_arm(encoder, designed_set(), ["en"], ["de"], arm="a", cache_dir=tmp_path)
    assert encoder.calls == {"images": 1, "en": 1, "de": 1}  # each language in one call
    again = evaluate_arm(encoder, designed_set(), ["en"], ["de"], arm="a", cache_dir=tmp_path)
    assert encoder.calls == {"images": 1, "en": 1, "de": 1}
    pd.testing.assert_frame_equal(first[0], again[0])
    first_only = EvalSection(captions="first")
    evaluate_arm(
        encoder, designed_set(), ["en"], ["de"], eval_cfg=first_only, arm="a", cache_dir=tmp_path
    )
    assert encoder.calls == {"images": 1, "en": 1, "de": 1}  # both conventions share the files
    evaluate_arm(encoder, designed_set(), ["en"], ["de"], arm="b", cache_dir=tmp_path)
    assert encoder.calls == {"images": 2, "en": 2, "de": 2}  # another arm is another key
    files = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.npy"))
    digest = set_fingerprint(designed_set())
    assert files[:3] == [
        f"v2/a/b0-sNone-designedckpt/designed-{digest}/{item}.npy"
        for item in ("images", "text-de", "text-en")
    ]


def test_cache_key_changes_with_the_set_content(tmp_path: Path) -> None:
    changed = designed_set()
    captions = changed.captions.copy()
    captions.loc[0, "caption"] = "en 0 1"
    edited = ImageTextSet(changed.name, changed.image_keys, changed.images, captions)
    assert set_fingerprint(edited) != set_fingerprint(changed)
    assert set_fingerprint(designed_set()) == set_fingerprint(changed)


def test_cached_embeddings_checks_the_encoder_output(tmp_path: Path) -> None:
    key = EmbeddingKey("arm", 0, 1, "ckpt", "set", "hash")
    with pytest.raises(ValueError, match=r"arm set images: expected embeddings shaped \[3, D\]"):
        cached_embeddings(tmp_path, key, "images", 3, lambda: np.ones((2, 4)))
    with pytest.raises(ValueError, match="NaN"):
        cached_embeddings(None, key, "images", 1, lambda: np.full((1, 4), np.nan))
    with pytest.raises(ValueError, match="cannot name a cache folder"):
        cached_embeddings(tmp_path, EmbeddingKey("a/b", 0, 1, "c", "s", "h"), "x", 1, np.ones)
    assert not list(tmp_path.rglob("*.npy"))


def test_missing_checkpoint_names_the_path_and_the_fix(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"nowhere: no checkpoint for this arm.*train"):
        ModelEncoder.from_folder(tmp_path / "nowhere")


@pytest.fixture(scope="module")
def tiny_world(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ImageTextSet]:
    root = tmp_path_factory.mktemp("eval")
    cfg = SyntheticSection(
        pretrain_images=200, finetune_images=20, eval_images=30, langs=SEEN + HELDOUT
    )
    eval_set = load_pool(generate_corpus(cfg, root / "corpus", progress=False), "eval")
    words = [word for lang in SEEN + HELDOUT for word in lexicon_words(lang)]
    captions = eval_set.captions["caption"].tolist()
    tokenizer = build_tokenizer(captions, root / "tok", TINY.vocab_size, seed_words=words)
    model_dir = write_tiny_model_dir(TINY, tokenizer, cfg.image_size, root / "model", seed=0)
    return model_dir, eval_set


def test_tiny_model_runs_all_four_tasks(tiny_world, tmp_path: Path) -> None:
    model_dir, eval_set = tiny_world
    encoder = ModelEncoder.from_folder(model_dir, batch_size=64)
    assert encoder.checkpoint == state_dict_hash(load_model(model_dir).model)
    assert encoder.describe()["model"] == f"local-dir:{model_dir}"
    results, ranks = evaluate_arm(
        encoder, eval_set, SEEN, HELDOUT, arm="zeroshot", base_seed=0, cache_dir=tmp_path / "c"
    )
    assert tuple(results.columns) == RESULT_COLUMNS and tuple(ranks.columns) == RANK_COLUMNS
    assert set(results["task"]) == {"t2i", "i2t", "xt2t", "multilingual", "multilingual_seen"}
    assert results["value"].between(0, 1).all() and results["seed"].isna().all()
    n_captions = 30 * 2  # eval images x captions per image, per language
    t2i = results[(results["task"] == "t2i") & (results["metric"] == "R@1")]
    assert t2i["query_lang"].tolist() == SEEN + HELDOUT and (t2i["n_queries"] == n_captions).all()
    xt2t = results[(results["task"] == "xt2t") & (results["metric"] == "mAP")]
    assert len(xt2t) == 12  # every ordered pair of different languages
    pool = ranks[(ranks["task"] == "multilingual") & (ranks["query_lang"] != "image")]
    assert len(pool) == 4 * n_captions * 3  # queries x their translations in 3 other languages
    assert pool["rank"].between(1, 4 * 30 - 1).all()  # a pool: one caption per image and language
    seen = ranks[ranks["task"] == "multilingual_seen"]
    assert set(seen["relevant_lang"]) == set(SEEN) and seen["rank"].max() <= 2 * 30
    assert ranks["rank"].between(1, 4 * n_captions).all()
    # ranked where the encoder runs (run.device), not wherever torch sees a GPU
    with (
        mock.patch("torch.cuda.is_available", return_value=True),
        mock.patch("xlr.eval.retrieval.relevant_ranks", wraps=relevant_ranks) as ranker,
    ):
        again, _ = evaluate_arm(
            encoder, eval_set, SEEN, HELDOUT, ["t2i"], arm="zeroshot", cache_dir=tmp_path / "c"
        )
    assert {call.kwargs["device"] for call in ranker.call_args_list} == {"cpu"}
    t2i_rows = results[results["task"] == "t2i"].reset_index(drop=True)
    pd.testing.assert_frame_equal(again.reset_index(drop=True), t2i_rows)
    written = write_results(results, ranks, tmp_path / "run")
    ranks_file = f"zeroshot-b0-snone-{eval_set.name}.parquet"
    assert tmp_path / "run" / "results" / "ranks" / ranks_file in written
    assert len(written) == 2 + len(SEEN + HELDOUT)  # results, ranks, a record per language


def test_each_set_is_evaluated_in_the_study_languages_it_has() -> None:
    """Multi30K has en, de, fr, cs; LAION's validation split only the sampled languages: the
    rest of the study's are left out of that set's tasks, in study order, not an error."""
    captions = pd.DataFrame(
        {
            "image_id": [0, 0, 1, 1],
            "lang": ["fr", "en", "fr", "en"],
            "caption_idx": 0,
            "caption": ["un chat", "a cat", "un chien", "a dog"],
        }  # fmt: skip
    )
    images = ArrayImages(np.zeros((2, 8, 8, 3), dtype=np.uint8))
    multi30k = ImageTextSet("multi30k", ["a", "b"], images, captions, parallel=True)
    assert languages_in(multi30k, ["en", "de", "fr"], ["ko", "cs"]) == (["en", "fr"], [])
