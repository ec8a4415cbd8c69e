import json
import subprocess
import sys

from conftest import ROOT


def test_throughput_benchmark_prints_both_pipelines_as_json():
    result = subprocess.run([sys.executable, "benchmarks/throughput.py", "--device", "cpu",
                             "--what", "data", "--batches", "2", "--json"], cwd=ROOT,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    for key in ("baseline_img_s", "fast_img_s", "device", "batch_size", "torch"):
        assert key in report
    assert report["baseline_img_s"] > 0 and report["fast_img_s"] > 0 and report["device"] == "cpu"
