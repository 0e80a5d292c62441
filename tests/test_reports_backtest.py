"""Reports on a real backtest of the shipped sample: every section, real plots, figures that agree with the run."""

from __future__ import annotations

import base64
import io
import json
import re
from pathlib import Path

import matplotlib.image as mpimg
import pytest

from engine.cli import main
from reports import plots

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "config" / "backtests" / "market_maker_sample.json"

pytestmark = pytest.mark.skipif(not CONFIG.exists(), reason="the sample backtest config is not in this checkout")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bt") / "mm"
    mp = pytest.MonkeyPatch()
    mp.chdir(REPO)  # the config names the sample data relative to the repository
    try:
        assert main(["backtest", str(CONFIG), "--out", str(out), "--no-progress"]) == 0
    finally:
        mp.undo()
    return out


def _pngs(html: str) -> list[bytes]:
    return [base64.b64decode(b) for b in re.findall(r'src="data:image/png;base64,([^"]+)"', html)]


def test_post_mortem_of_the_sample_backtest(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", "post-mortem", str(run_dir)]) == 0
    out = capsys.readouterr().out
    assert "Post-mortem of all strategies" in out and "diagnosis" in out
    summary = json.loads((run_dir / "manifest.json").read_text())["summary"]
    data = json.loads((run_dir / "post_mortem.json").read_text())
    assert data["execution"]["fills"] == summary["fills"] > 0
    assert data["execution"]["orders_submitted"] == summary["orders_submitted"]
    assert data["pnl"]["net"] == pytest.approx(summary["net_pnl"], abs=1e-6)
    assert data["pnl"]["fees"] == pytest.approx(summary["fees"], abs=1e-6)
    assert data["round_trips"]["count"] > 0
    assert data["position_check"]["ledger"]["drifted"] == 0  # the engine's positions agree with its fills
    html = (run_dir / "post_mortem.html").read_text()
    for anchor in ("summary", "pnl", "round-trips", "execution", "breakdowns", "diagnosis"):
        assert f'id="{anchor}"' in html
    images = _pngs(html)
    assert len(images) >= 6
    for png in images:
        img = mpimg.imread(io.BytesIO(png), format="png")
        assert img.shape[:2] == (plots.HEIGHT_PX, plots.WIDTH_PX)
        assert img[..., :3].std() > 0.01


def test_latency_report_of_the_sample_backtest(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", "latency", str(run_dir)]) == 0
    out = capsys.readouterr().out
    assert "simulated latencies" in out
    data = json.loads((run_dir / "latency_report.json").read_text())
    stages = data["stages"]
    assert stages["send_to_ack"]["count"] > 0 and stages["end_to_end"]["count"] > 0
    feed = json.loads((run_dir / "manifest.json").read_text()).get("sim", {}).get("latency", {}).get("feed", {})
    if feed.get("type") == "constant":  # a constant simulated feed latency is every sample
        assert stages["feed"]["p50_us"] == pytest.approx(feed["ns"] / 1000)
        assert stages["feed"]["max_us"] == pytest.approx(feed["ns"] / 1000)
    for png in _pngs((run_dir / "latency_report.html").read_text()):
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
        assert mpimg.imread(io.BytesIO(png), format="png").shape[1] == plots.WIDTH_PX
