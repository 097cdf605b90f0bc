"""Benchmark FER2013 loading: cold decode, warm (cached) load, and Keras' directory loader.

Usage:
    python benchmarks/bench_data.py [DATA_DIR]     (default: ../shared/data/fer2013)

Prints, for the same folder and in one run: the cold decode time of `fer_utils.data.load_dataset`
(into an empty temporary cache), the warm load time (from that cache), and the time of one full pass
of `keras.utils.image_dataset_from_directory` over every split, with the ratios.
"""

import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main(argv):
    repo = Path(__file__).resolve().parent.parent
    data_dir = Path(argv[1]) if len(argv) > 1 else repo.parent / "shared" / "data" / "fer2013"
    from fer_utils import data

    print(f"data: {data_dir}   cores: {os.cpu_count()}   load average: {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory() as cache:
        start = time.perf_counter()
        dataset = data.load_dataset(data_dir, cache=cache, progress=False)
        cold = time.perf_counter() - start
        total = sum(len(split) for split in dataset.values())
        warm_times = []
        for _ in range(3):
            start = time.perf_counter()
            data.load_dataset(data_dir, cache=cache, progress=False)
            warm_times.append(time.perf_counter() - start)
    warm = min(warm_times)
    print(f"images: {total} in splits {sorted(dataset)}")
    print(f"cold decode (fer_utils):            {cold:7.2f} s   ({total / cold:,.0f} images/s)")
    print(f"warm cached load (fer_utils):       {warm:7.3f} s   (best of 3)")

    import keras

    start = time.perf_counter()
    seen = 0
    for split in sorted(dataset):
        images = keras.utils.image_dataset_from_directory(
            data_dir / split, labels="inferred", color_mode="grayscale", image_size=(48, 48),
            batch_size=256, shuffle=False, verbose=False,
        )
        for batch, _ in images:
            seen += int(batch.shape[0])
    keras_time = time.perf_counter() - start
    print(f"image_dataset_from_directory pass:  {keras_time:7.2f} s   ({seen} images)")
    print(f"ratio keras / fer_utils cold:       {keras_time / cold:7.1f}x")
    print(f"ratio keras / fer_utils warm:       {keras_time / warm:7.1f}x")


if __name__ == "__main__":
    main(sys.argv)
