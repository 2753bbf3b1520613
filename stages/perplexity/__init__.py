"""CCNet's perplexity filter, in four stages (the `perplexity` group):

    perplexity_model    per language: SentencePiece pieces and a KenLM 5-gram trained on the run's
                        Wikipedia articles (training.py); skipped for a language given `models`
    perplexity_score    per crawl shard: each document's perplexity and its paragraphs' (scoring.py),
                        beside a histogram of the shard's scores per language
    perplexity_cutoffs  one task: each language's head/middle/tail cutoffs, the configured
                        percentiles (CCNet: 30th and 60th) of the whole run's histograms, or the
                        configured cutoffs (buckets.py)
    perplexity          per crawl shard: the documents with `perplexity`, `paragraph_perplexity` and
                        `perplexity_bucket`, those outside `keep_buckets` dropped (buckets.py)

The model itself is classifiers/ngram_lm.py.
"""

from stages.perplexity.buckets import CUTOFFS_FILE, bucket_documents, compute_cutoffs
from stages.perplexity.scoring import histogram_path, score_perplexity
from stages.perplexity.training import LM_FILE, META_FILE, PIECES_FILE, train_perplexity_model

__all__ = ["CUTOFFS_FILE", "LM_FILE", "META_FILE", "PIECES_FILE", "bucket_documents", "compute_cutoffs", "histogram_path", "score_perplexity",
           "train_perplexity_model"]
