from pathlib import Path
from typing import get_args

import pytest
import yaml

from pipeline.cli import main
from pipeline.config import ConfigError, load_config
from tests.support import ROOT, write_config


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
