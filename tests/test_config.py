import re
import shutil
from pathlib import Path
from typing import get_args

import pytest
import yaml

from pipeline.cli import main
from pipeline.config import ConfigError, load_config
from tests.support import LID_MODEL, ROOT, write_config


def test_demo_config_is_valid(monkeypatch):
    monkeypatch.chdir(ROOT)
    config = load_config("configs/demo.yaml")
    assert config.input_files("common_crawl")
    assert config.stages.langid.languages == ["en"]


def _errors_of(tmp_path: Path, raw: dict) -> str:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError) as err:
        load_config(path)
    return str(err.value)


def test_errors_name_every_bad_key(tmp_path):
    good = yaml.safe_load(write_config(tmp_path).read_text())
    good["run"]["colour"] = "blue"
    good["stages"]["langid"]["threshold"] = 1.5
    good["stages"]["train"]["steps"] = 0
    good["stages"]["tokeniser"] = {}
    message = _errors_of(tmp_path, good)
    for key in ("run.colour: unknown key", "stages.langid.threshold", "stages.train.steps", "stages.tokeniser"):
        assert key in message


def test_missing_inputs_and_model_are_named(tmp_path):
    raw = yaml.safe_load(write_config(tmp_path).read_text())
    raw["inputs"]["common_crawl"] = [str(tmp_path / "nowhere" / "*.warc.gz")]
    raw["stages"]["langid"]["model"] = str(tmp_path / "lid.176.bin")
    message = _errors_of(tmp_path, raw)
    assert "inputs.common_crawl: no file matches" in message
    assert "stages.langid.model" in message and "lid.176.bin" in message


def test_quality_classifier_needs_wikipedia_or_a_trained_model(tmp_path):
    raw = yaml.safe_load(write_config(tmp_path).read_text())
    raw["stages"]["quality_classifier"]["enabled"] = True
    message = _errors_of(tmp_path, raw)
    assert "stages.quality_classifier" in message and "inputs.wikipedia" in message and "enabled: false" in message
    raw["stages"]["quality_classifier"]["model"] = str(tmp_path / "quality.ftz")
    assert "stages.quality_classifier.model" in _errors_of(tmp_path, raw)


def test_not_yaml_or_missing_file(tmp_path):
    (tmp_path / "broken.yaml").write_text("run: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(tmp_path / "broken.yaml")
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "absent.yaml")


def test_command_line_overrides(tmp_path):
    config_path = write_config(tmp_path, warcs=["wget-2024-academic-0"])
    other = ROOT / "samples" / "warc" / "clueweb09-ja-quirk.warc.gz"
    config = load_config(config_path, output=str(tmp_path / "elsewhere"), inputs={"common_crawl": [str(other)]})
    assert config.output_dir == tmp_path / "elsewhere"
    assert config.input_files("common_crawl") == [str(other)]


def test_cli_reports_config_errors_before_any_work(tmp_path, capsys):
    raw = yaml.safe_load(write_config(tmp_path).read_text())
    raw["stages"]["extract"]["timeout_s"] = -1
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(raw))
    assert main(["run", str(tmp_path / "bad.yaml")]) == 2
    assert "stages.extract.timeout_s" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_cli_refuses_a_stage_whose_upstream_has_not_run(tmp_path, capsys):
    assert main(["run", str(write_config(tmp_path)), "--stages", "langid"]) == 2
    assert "run `python -m pipeline run CONFIG --stages extract` first" in capsys.readouterr().err


def test_config_presets_are_the_trainers():
    from pipeline.config import ModelPreset
    from trainer.model import PRESETS

    assert set(get_args(ModelPreset)) == set(PRESETS)


def test_train_settings_are_the_trainers():
    import dataclasses

    from pipeline.config import TrainParams
    from trainer.distributed import RECOMPUTE
    from trainer.train import TrainConfig

    assert set(TrainParams.model_fields) <= {f.name for f in dataclasses.fields(TrainConfig)}
    assert set(get_args(TrainParams.model_fields["recompute"].annotation)) == set(RECOMPUTE)


@pytest.mark.parametrize(
    "make, says",
    [
        (lambda p: p.mkdir(), "is a directory"),
        (lambda p: p.write_bytes(LID_MODEL.read_bytes()[:4096]), "is a binary file"),
        (lambda p: p.write_bytes("run:\n  output: r\u00e9sum\u00e9\n".encode("latin-1")), "is not UTF-8 text (byte 0xe9"),
        (lambda p: p.write_text("# nothing yet\n"), "is empty"),
        (lambda p: p.write_text("- run\n- inputs\n"), "holds a list, not a mapping"),
    ],
    ids=["directory", "binary", "latin-1", "empty", "list"],
)
def test_a_config_that_is_not_yaml_text_of_a_mapping_is_named(tmp_path, capsys, make, says):
    path = tmp_path / "config.yaml"
    make(path)
    with pytest.raises(ConfigError, match=re.escape(f"config file {path} {says}")):
        load_config(path)
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: config file {path}") and "Traceback" not in err


def test_a_model_path_that_is_not_a_model_is_refused_before_any_work(tmp_path, capsys):
    raw = yaml.safe_load(write_config(tmp_path).read_text())
    raw["stages"]["langid"]["model"] = "/etc/passwd"
    raw["stages"]["perplexity"]["models"] = {"en": {"pieces": str(LID_MODEL), "lm": str(LID_MODEL)}}
    message = _errors_of(tmp_path, raw)
    assert "stages.langid.model" in message and "/etc/passwd is not a fastText model" in message
    assert f"{LID_MODEL} is not a SentencePiece model" in message and f"{LID_MODEL} is not a KenLM model" in message
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(raw))
    assert main(["run", str(tmp_path / "bad.yaml")]) == 2
    assert "/etc/passwd is not a fastText model" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_validate_and_run_refuse_clashing_shard_names_before_ray_starts(tmp_path, capsys):
    import ray

    config_path = write_config(tmp_path, warcs=["wget-2024-academic-0"])
    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(tmp_path / "inputs" / "wget-2024-academic-0.warc.gz", other)
    clashing = ["--input", f"common_crawl={tmp_path}/*/*.warc.gz"]
    assert main(["validate", str(config_path), *clashing]) == 2
    assert "several files are named 'wget-2024-academic-0'" in capsys.readouterr().err
    assert main(["run", str(config_path), *clashing]) == 2
    assert "several files are named 'wget-2024-academic-0'" in capsys.readouterr().err
    assert not ray.is_initialized() and not (tmp_path / "run").exists()


def test_a_source_without_a_share_of_the_mix_is_named(tmp_path):
    raw = yaml.safe_load(write_config(tmp_path).read_text())
    raw["inputs"]["books"] = {"gutenberg": [str(ROOT / "samples" / "books" / "gutenberg" / "*.txt")]}
    raw["stages"]["mixture"] = {"sources": {"common_crawl": {"weight": 1.0}}}
    assert "the run has source(s) ['books'] but no share of the mix" in _errors_of(tmp_path, raw)
