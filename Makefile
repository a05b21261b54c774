# LatentBench. `make bench` and `make test` do all set-up on a fresh machine.
PY := .venv/bin/python
# glibc's default allocator costs CPU training time in page faults: keep freed memory mapped
# instead (docs/performance.md).
export MALLOC_MMAP_MAX_ := 0
export MALLOC_TRIM_THRESHOLD_ := 100000000000

.PHONY: site site-screenshot bench-site-speed bench-stress-speed bench bench-fewshot-speed bench-digits bench-compare bench-compare-mnist bench-compare-cifar10 bench-speed bench-maps bench-fresh bench-fresh-test bench-gpu-smoke gpu-bundle bench-parallel bench-mnist bench-cifar10 bench-cifar10-gpu bench-transfer test test-fast lint docs report clean-cache

# The pinned lock, then this checkout as an editable package: the `latentbench` command (setuptools
# warns that a folder named like the package takes precedence: here it is the package).
.venv/installed: requirements.txt pyproject.toml
	test -x $(PY) || python3 -m venv .venv
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	PYTHONWARNINGS=ignore::UserWarning $(PY) -m pip install -q --no-deps --no-build-isolation -e .
	touch $@

# `make bench` trains every registered learner and baseline on the embedded digits data at the
# page's main latent size, d = 64, seed 0, into a scratch store (.cache/bench/: its tables are
# .cache/bench/digits.md), then compares exactly those runs with the committed runs of the same
# keys (nothing retrained; a second `make bench` reuses what it trained). On the machine kind the
# store was made on they are bit-identical; on another CPU the trained learners drift, and the
# tolerances below are that measured drift with a margin (results/findings/reproducibility.md).
# `make bench-digits`: d = 16 as well, and all three seeds.
BENCH_SCRATCH ?= .cache/bench
bench: .venv/installed
	BENCH_RESULTS_DIR=$(BENCH_SCRATCH) BENCH_CACHE_DIR=$(BENCH_SCRATCH)/cache $(PY) -m bench run --config configs/default.toml --latent-dims 64 --seeds 0
	$(PY) -m bench verify --trained-in $(BENCH_SCRATCH) --tolerance 5 --metric-tolerance mlp=8 --psnr-tolerance 2

bench-digits: .venv/installed  ## the same grid into the committed store -> results/digits.md
	$(PY) -m bench run --config configs/default.toml

# Real data: BENCH_DATA_DIR must hold MNIST/raw/ (and cifar10_jpeg.npz for CIFAR-10). Each line is
# resumable: stop at any point, run the target again, and finished runs are not redone.
MNIST := $(PY) -m bench run --config configs/mnist.toml
bench-mnist: .venv/installed  ## -> results/mnist.md
	$(MNIST)  # the main grid: every registered learner at d=64, 3 seeds
	$(MNIST) --latent-dims 16,64,256,1024 --seeds 0
	$(MNIST) --methods ae --latent-dims 1024 --seeds 0 \
	    --set methods.ae.channels=16,32,64,256 --set methods.ae.bottleneck=spatial
	$(MNIST) --methods ae --set methods.ae.loss=l1+ssim
	$(MNIST) --methods unet --set methods.unet.skips=false --seeds 0  # the ae network: one seed shows it
	$(MNIST) --methods unet --set methods.unet.skip_drop=0.5
	$(MNIST) --methods dae --set methods.dae.noise_std=0.1 --set methods.dae.mask_prob=0.1
	$(MNIST) --methods dae --set methods.dae.noise_std=0.6 --set methods.dae.mask_prob=0.5

CIFAR10 := $(PY) -m bench run --config configs/cifar10.toml --dataset $(or $(CIFAR10_DATASET),cifar10-jpeg)
# `unet` with skips=false is the `ae` network exactly (bench-mnist shows the same numbers), so the
# U-Net ablation here is skip_drop. What a run costs: results/status.md.
bench-cifar10: .venv/installed  ## -> results/cifar10-jpeg.md (CIFAR10_DATASET=cifar10 for the original files)
	$(CIFAR10)
	$(CIFAR10) --methods unet --set methods.unet.skip_drop=0.5
	$(CIFAR10) --methods dae --set methods.dae.noise_std=0.4 --set methods.dae.mask_prob=0.5
	$(CIFAR10) --methods ae --set methods.ae.loss=l1+ssim
	$(CIFAR10) --methods dae --set methods.dae.noise_std=0.05 --set methods.dae.mask_prob=0.1
	$(CIFAR10) --latent-dims 16,64,1024 --seeds 0

bench-cifar10-gpu: .venv/installed  ## the full-size grid, on a GPU
	$(PY) -m bench run --config configs/cifar10-gpu.toml --dataset $(or $(CIFAR10_DATASET),cifar10-jpeg)

# Transfer: trained on one dataset (or some of its classes), probed on another's labels at the main
# latent size, 3 seeds; the CIFAR-10 class split at seed 0 (SEEDS=0,1,2 for more). Each line resumes
# (BENCH_DATA_DIR as for bench-mnist/-cifar10); what each took: results/status.md.
bench-transfer: .venv/installed  ## -> results/digits-to-mnist.md, mnist-to-digits.md, the CIFAR-10 class split
	$(PY) -m bench run --config configs/default.toml --probe-dataset mnist --latent-dims 64
	$(MNIST) --probe-dataset digits --latent-dims 64
	$(CIFAR10) --seeds $(or $(SEEDS),0) --classes 0-4 --probe-classes 5-9  # the split: trained on classes 0-4, probed on 5-9
	$(CIFAR10) --seeds $(or $(SEEDS),0) --classes 5-9  # its in-domain column: trained and probed on 5-9
	$(CIFAR10) --seeds $(or $(SEEDS),0) --classes 0-4  # the training side in domain (the split's checkpoints, probed on 0-4)

# Every trainable learner tuned with the same budget (studies compare-<dataset>-<learner>, best
# configuration re-run over the grid's seeds) -> the "Tuned at equal budget" table of the page.
# Resumable; the MNIST one is hours on 2 cores (it prints its plan and keeps under --max-hours).
bench-compare: .venv/installed  ## digits -> results/digits.md, results/studies/
	$(PY) -m bench compare --config configs/default.toml --latent-dim 64 --trials 20 --trial-epochs 10

bench-compare-mnist: .venv/installed  ## MNIST (BENCH_DATA_DIR with MNIST/raw/) -> results/mnist.md
	$(PY) -m bench compare --config configs/mnist.toml --dataset mnist --latent-dim 64 --trials 12 \
	    --trial-epochs 5 --max-hours 12

# Trials at a quarter of each learner's own budget (view-based learners train 40 epochs, the rest
# 10): ~22 h on 2 cores, days of it unestimated until BYOL/VICReg/Barlow Twins have CIFAR runs.
bench-compare-cifar10: .venv/installed  ## CIFAR-10 (JPEG q75 copy) -> results/cifar10-jpeg.md
	$(PY) -m bench compare --config configs/cifar10.toml --dataset $(or $(CIFAR10_DATASET),cifar10-jpeg) \
	    --latent-dim 256 --trials 12 --trial-epochs 25% --max-hours 30

# The results explorer: static HTML from the store (no training), opened from disk: explorer/index.html.
site: .venv/installed  ## the results explorer (leaderboard, dataset, transfer, study and run pages) -> explorer/
	$(PY) -m bench site --out explorer

site-screenshot: site  ## the browser tests on the committed store's explorer; the leaderboard's screenshot -> docs/leaderboard.png
	BENCH_SITE_DIR=explorer BENCH_SITE_SCREENSHOT=docs/leaderboard.png $(PY) -m pytest -q -p no:xdist tests/test_browser.py

bench-site-speed: .venv/installed  ## the explorer's build (fresh, unchanged, one run changed) and page loads -> results/speed.md
	$(PY) -m bench.tools.site_speed

bench-stress-speed: .venv/installed  ## what corruptions, calibration and OOD cost a digits and an MNIST run -> results/speed.md
	$(PY) -m bench.tools.speed_stress

bench-speed: .venv/installed  ## the fast paths against scikit-learn and lightly's DataLoader pipeline -> results/speed.md
	$(PY) -m bench.tools.speed

bench-fewshot-speed: .venv/installed  ## a digits run's evaluation with and without k-shot episodes -> results/speed.md
	$(PY) -m bench.tools.speed_fewshot

bench-maps: .venv/installed  ## t-SNE against openTSNE and UMAP on 2,000 MNIST latents; bench report timed -> results/speed.md
	$(PY) -m bench.tools.maps

bench-fresh: .venv/installed  ## time `make bench` from an empty store -> results/speed.md
	$(PY) -m bench.tools.benchmarks fresh

bench-fresh-test: .venv/installed  ## CI on a fresh clone of HEAD: install and `bash .ci/run` timed -> results/speed.md
	$(PY) -m bench.tools.benchmarks fresh-test

# On a CUDA machine: the smoke (ResNet-18 SimCLR and an AE, 3 epochs each, timed and probed), then
# the full-size 200-epoch grid for GPU_GRID_MINUTES, stopped like Ctrl-C: run it again on the same
# machine and the grid continues (finished runs kept, the stopped run resumes after its last saved
# epoch) -> results/speed.md, ## GPU. `make gpu-bundle` + bench/tools/gpu_offline.sh: the same on a
# GPU machine without network access that has PyTorch but not this project's venv.
GPU_GRID_MINUTES ?= 5
bench-gpu-smoke: .venv/installed  ## on a CUDA machine: smoke, then the 200-epoch grid for GPU_GRID_MINUTES -> results/speed.md
	$(PY) -m bench.tools.gpu_smoke --grid-minutes $(GPU_GRID_MINUTES)

GPU_PYTHON ?= 3.12
gpu-bundle: .venv/installed  ## wheels (lightly, pytorch-msssim) and cifar10_jpeg.npz for bench/tools/gpu_offline.sh -> .gpu/
	rm -rf .gpu && mkdir -p .gpu
	$(PY) -m pip download -q --no-deps --only-binary=:all: --python-version $(GPU_PYTHON) --implementation cp \
	    --platform manylinux2014_x86_64 -d .gpu $$(grep -E '^(lightly|pytorch-msssim)==' requirements.txt)
	cp "$${BENCH_DATA_DIR:?set BENCH_DATA_DIR to the folder holding cifar10_jpeg.npz}/cifar10_jpeg.npz" .gpu/

bench-parallel: .venv/installed  ## the digits grid in-process vs on Ray (--workers 2) -> results/parallel.md
	$(PY) -m bench.tools.benchmarks parallel

# One pytest-xdist worker a core; the Ray cluster's tests run in turn on one of them (xdist_group).
test: .venv/installed
	$(PY) -m pytest -n auto --dist loadgroup

# The edit-test loop: every test not marked `slow` (pyproject.toml: the end-to-end ones), on one
# xdist worker a core; a new test is in it unless it says it is slow. `make test` runs them all.
test-fast: .venv/installed
	$(PY) -m pytest -m "not slow" -n auto --dist loadgroup

lint: .venv/installed  ## ruff, and the import contracts of pyproject.toml (no cycles, layers kept)
	$(PY) -m ruff check bench methods tests
	$(PY) -m ruff format --check bench methods tests
	.venv/bin/lint-imports

docs: .venv/installed  ## the documentation site (docs/ and the result pages) -> site/, warnings are errors
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict

report: .venv/installed  ## rebuild results/*.md and plots from the run store
	$(PY) -m bench report

clean-cache:  ## drop checkpoints, latents and decoded datasets (the run store is kept)
	rm -rf .cache
