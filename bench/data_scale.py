"""Data scale: peak memory and throughput of every data path at N records, and how memory grows with N.

Usage: python bench/data_scale.py [--sizes 1000,10000] [--min-points 256] [--max-points 4096] [--steps 20]
                                  [--batch 4] [--keep DIR] [--verbose]

For each N, a temp folder gets N GDSH-shaped records (chat JSON + one CSV per plot, one series of a length drawn
uniformly from [--min-points, --max-points], seeded), and each path runs in its own fresh child process:
  tsconvert            JSON + CSVs -> NAME.jsonl (--workers 1: one process, so its peak is the child's)
  tsconvert parquet    the same -> NAME.parquet (--file-type parquet, series float32)
  validate jsonl / parquet
  get_dataset          LLaMA-Factory's `get_dataset` in memory (time-series template, tiny ChatTS-8B-architecture model)
  get_dataset parquet  the same on the Parquet file
  get_dataset text     the same records with the series removed and each placeholder replaced by the prefix the
                       plugin writes plus one filler token per patch (the same token count; total tokens printed)
  get_dataset stream   `streaming: true`, the stream read to the end (records/s over the whole pass)
  stream parquet       the same on the Parquet file
  train 20 stream      `llamafactory-cli train` in-process, `streaming: true`, --steps steps (LoRA, batch --batch)
Peak RSS is the child's ru_maxrss (os.wait4; the parent imports only numpy, and the model is built in a child too,
since a forked child's ru_maxrss starts from its parent's RSS); "heap" is the child's peak RssAnon (sampled every
20 ms), i.e. without the file pages ru_maxrss also counts (the Arrow files `datasets` memory-maps, libraries). Seconds are the work alone, timed in the child after
its imports (training: the trainer's train_runtime); records/s come from them. The ratios of two get_dataset paths
are also given in CPU seconds of the child (all its threads), which other jobs on a shared CPU sway less. The datasets cache of each child is
its own temp folder, removed after it.
The slope of peak RSS against N (least squares over --sizes, MiB per 10k records) is printed per path: the
streaming paths should stay flat (the in-memory ones hold Arrow tables, which `datasets` memory-maps).
Not a test; no timed assertions. On a shared CPU compare paths within one run, not numbers across runs.

Measured (2-core CPU shared with four other jobs, so seconds are rough; 2150-2171 points per record;
`--sizes 1000,10000,100000 --paths "tsconvert,tsconvert parquet,validate jsonl,validate parquet,get_dataset stream,
stream parquet,train stream,get_dataset"`, ~37 min; at 100k JSONL 1644 MiB, Parquet 472 MiB on disk; streamed
Parquet reads 1.14-1.24x the records/s of JSONL). Cells: work seconds, records/s, peak RSS / heap MiB. Slope:
MiB of peak RSS / heap per 10k records, least squares over the three sizes, then from 10k to 100k alone (the step
from 1k is the second 1,000-record preprocessing batch in flight):

| path | N=1k | N=10k | N=100k | slope 1k-100k | slope 10k-100k |
|---|---|---|---|---|---|
| tsconvert | 1.7 s, 585/s, 82 / 38 | 13.9 s, 718/s, 82 / 39 | 114.9 s, 871/s, 85 / 42 | +0.3 / +0.4 | +0.3 / +0.3 |
| tsconvert parquet | 3.2 s, 317/s, 182 / 117 | 28.0 s, 357/s, 197 / 132 | 132.3 s, 756/s, 211 / 146 | +2.4 / +2.4 | +1.6 / +1.5 |
| validate jsonl | 0.7 s, 1463/s, 36 / 19 | 8.4 s, 1191/s, 37 / 20 | 61.0 s, 1639/s, 38 / 20 | +0.2 / +0.1 | +0.1 / +0.0 |
| validate parquet | 2.1 s, 467/s, 130 / 84 | 6.0 s, 1660/s, 142 / 95 | 28.1 s, 3559/s, 146 / 99 | +1.1 / +1.1 | +0.4 / +0.4 |
| get_dataset stream | 8.7 s, 115/s, 1114 / 705 | 39.3 s, 254/s, 1235 / 846 | 216.7 s, 461/s, 1252 / 863 | +9.0 / +10.3 | +1.9 / +1.9 |
| stream parquet | 7.5 s, 133/s, 1102 / 673 | 31.6 s, 316/s, 1189 / 796 | 189.5 s, 528/s, 1202 / 811 | +6.6 / +8.9 | +1.5 / +1.6 |
| train stream (20 steps, 80 rec) | 37.1 s, 2/s, 1459 / 1039 | 16.5 s, 5/s, 1482 / 1051 | 21.3 s, 4/s, 1501 / 1078 | +3.4 / +3.6 | +2.2 / +3.0 |
| get_dataset (in memory) | 4.1 s, 244/s, 1102 / 618 | 19.4 s, 516/s, 1215 / 652 | 253.0 s, 395/s, 3154 / 650 | +210.6 / +1.8 | +215.4 / -0.3 |

The streaming paths are flat in N (<= 2 MiB per 10k records from 10k to 100k); in memory the heap is flat and the
RSS is the memory-mapped Arrow cache. Streamed Parquet before `tsplugin.llamafactory.parquet_stream` (datasets'
own reader, pyarrow pre-buffering every row group read), same machine: 1269 / 1360 / 1494 MiB at 5k / 10k / 20k
(+148 per 10k); after: 1178 / 1192 / 1192 (heap 786 / 800 / 800). `validate parquet` before: 159 / 224 MiB at
5k / 20k; after 136 / 145.

Measured (issue 19, `--paths "get_dataset,get_dataset text"`, 2 CPU cores shared with other jobs at load average
8-11; "before" = 42b8da8, "after" = the id-level `<ts>` positions (tsplugin.llamafactory.position_ids), the
Arrow-read drop report and float32 series kept as stored; before and after run back to back; ratio = records/s,
series / text twin of equal token count, wall clock (CPU time)):

| N | before: series / text | ratio | after: series / text | ratio |
|---|---|---|---|---|
| 1k, 3 runs each, CPU s | 1.38 / 0.47, 1.92 / 0.46, 1.80 / 0.49 | 0.31 (0.34), 0.24 (0.24), 0.26 (0.27) | 1.04 / 0.52, 0.91 / 0.52, 1.26 / 1.11 | 0.47 (0.50), 0.57 (0.57), 0.90 (0.88) |
| 10k, rec/s (CPU s) | 442 / 938 (11.8 / 5.4) | 0.47x (0.46x) | 407 / 690 (10.5 / 5.9) | 0.59x (0.56x) |
| 10k, `--child` on kept data, twice, rec/s | | | 576 / 894, 551 / 986 | 0.64x, 0.56x |

(The 0.90x run is the twin's child meeting a busier CPU: 1.11 CPU s instead of ~0.5.) Medians: 1k 0.27x -> 0.57x
(CPU), 10k 0.47x -> 0.56-0.64x.

Single 1k runs swing by +-0.2 (the twin alone took 0.7 to 2.0 s wall between runs). Where the rest goes at 10k
(cProfile, after; series vs text twin, seconds): `load_dataset` of the JSONL 8.8 vs 0.1 (pyarrow's JSON parse of
164 MB of number text 5.6, writing the Arrow cache 3.1); the check pass 1.2 vs 0; the prefix (`sp_stats`, once per
series) and placeholder checks in the plugin 2.0 vs 0.4; reading `audios` back as Python lists 1.9 vs 1.1; the
tokenizer itself is now cheaper than the twin's (5.7 vs 6.7). Without the JSON load the ratio would be ~0.80x; a
float32 Parquet file (4.7 KB per record instead of 16.4) reached 0.72x / 0.69x (640 / 685 records/s) in
the same two `--child` runs.

The same comparison on a quiet machine (load average < 1, nothing else running, 2026-12-07; 1k: 42b8da8 and
main alternating, two runs each; 10k: main once): series / text twin records/s at 1k before 0.35x, 0.40x; after
0.41x, 0.45x (series path 1.0-1.1 s against 1.2-1.4 s before, the twin 0.5 s both); at 10k after 0.48x (10.5 s
against 5.0 s). The loaded runs above overstate the gain: under load the tokenizer's splitting of the `<ts>`
runs cost more than it does on a quiet CPU, where the ratio is still well short of 0.8x.
Quiet machine, 10k, cProfile of each child (`python -m cProfile bench/data_scale.py --child "get_dataset" --work
DIR/n10000 ...` on data kept with --keep): get_dataset 9.7 s (series) against 5.1 s (twin); `load_dataset` 3.2 s
against 0.3 s; the check pass 0.5 s; `expand_text` 0.6 s; `sp_stats` 0.4 s; the template's tokenisation 2.7 s
against 2.8 s. Float32 Parquet of the same records: 6.8 s, 0.66x the twin (JSONL 9.2 s, 0.48x; same run).

After tsplugin.llamafactory.file_cache (local JSON Lines and Parquet written into the Arrow cache by pyarrow in 1 MiB
blocks, the series typed, the system allocator), the vectorised check pass and the single placeholder check; from here
on `work_s` of the in-memory paths is `get_dataset` alone (the rows read back afterwards are `read_s`). Quiet machine,
2026-12-07, each path a fresh child after os.sync(), 5 rounds alternating series / twin / Parquet on data kept with
--keep; seconds per round, then ratio of records/s against the twin per round:

| N | series JSONL s | twin s | Parquet s | JSONL / twin | Parquet / twin |
|---|---|---|---|---|---|
| 1k | 0.96 0.78 0.92 0.92 0.61 | 0.56 0.84 0.73 0.60 0.77 | 0.74 0.89 0.89 0.74 0.93 | 0.58 1.07 0.79 0.65 1.28 (median 0.79) | 0.76 0.95 0.82 0.81 0.83 (0.82) |
| 10k | 6.27 6.97 6.91 7.77 7.20 | 5.44 5.18 5.19 5.45 5.69 | 5.97 6.28 6.54 6.64 6.74 | 0.87 0.74 0.75 0.70 0.79 (0.78) | 0.91 0.82 0.79 0.82 0.84 (0.83) |
| 10k, again (+2 small cuts) | 6.48 7.23 7.38 7.55 6.86 | 4.87 5.74 5.54 5.67 4.89 | 5.15 6.17 6.60 6.27 6.07 | 0.75 0.79 0.75 0.75 0.71 (0.77) | 0.94 0.93 0.84 0.90 0.81 (0.90) |

At 100k (the 10k files ten times over, 1.7 GB JSONL; get_dataset in one process, twin / series alternating): 43.7 /
57.4 s and 42.7 / 53.2 s (0.76x, 0.80x); heap 660 MiB against 635 at 10k and 602 at 1k. One child run of the series
path at 100k took 78-99 s while the write-back of the just generated GBs was running (hence the os.sync()). The load
at 10k is now ~1.0 s (pyarrow's parse of the numbers, 2 threads) plus ~0.1 s writing the cache, against 2.6-3.7 s in
`datasets`' builder; the parse is most of what separates the series path from the twin.

Correction (later on 2026-12-07): every child above ran with OMP_NUM_THREADS=1, which this bench then forced on all of
them; pyarrow sizes its thread pool from it, so the JSON parse ran on one thread (1.3 s at 10k, 0.75 s on two). A
single-GPU `llamafactory-cli train` leaves it unset (torchrun sets it to 1 for several GPUs), so the data paths now
run in the caller's environment; both settings are below. Changes since the table above: JSON Lines pieces are views
of a memory map (the parse 0.80 -> 0.70 s in one process), check_aligned tests the placeholders over whole columns
(the per-record loop, ~0.1 s at 10k, runs only when a test fails), Parquet batches are read on the calling thread
(with pyarrow's pool the load took 0.8 s instead of 0.3-0.6). 10k records, 5 rounds alternating, fresh children
(`work_s` of get_dataset; ratio of records/s against the twin per round, median):

| OMP_NUM_THREADS | series JSONL s | twin s | Parquet s | JSONL / twin | Parquet / twin |
|---|---|---|---|---|---|
| unset (1 GPU) | 4.59 4.50 4.34 4.35 4.42 | 3.70 3.72 3.66 3.48 3.91 | 4.48 4.92 4.37 4.85 5.05 | 0.81 0.83 0.84 0.80 0.88 (0.83) | 0.83 0.76 0.84 0.72 0.77 (0.77) |
| 1 (torchrun) | 5.04 6.17 5.89 6.34 7.07 | 3.64 4.33 3.97 4.71 4.52 | 4.17 4.71 4.94 5.08 5.32 | 0.72 0.70 0.67 0.74 0.64 (0.70) | 0.87 0.92 0.80 0.93 0.85 (0.87) |

Before the Parquet change, 7 rounds each: unset JSONL 0.82 (0.71-0.86), Parquet 0.77 (0.66-0.89); OMP 1 JSONL 0.73
(0.66-0.78), Parquet 0.81. At 1k (7 rounds, same code): unset JSONL 1.01, Parquet 0.77; OMP 1 JSONL 0.88, Parquet
0.91. The twin got faster during the session (5.1 -> 3.7 s at 10k: this VM's page faults and write-back vary), so
compare within a row only. Single children differ mostly in how long this VM takes to write the cache: the same 83 MB
of Parquet batches written as an Arrow stream took 0.02 s or 0.9 s in fresh processes run back to back (no memory
pressure, 18 GB free), which is why Parquet, with less to parse, can come out behind JSONL in a round.
At 100k (the 10k files ten times over, 1.7 GB JSONL; OMP_NUM_THREADS unset; fresh children, twin then series, twice):
51.4 / 39.4 s and 50.2 / 38.2 s, 0.77x and 0.76x; heap 656 / 652 MiB (twin 642 / 644). Where the 100k gap goes
(one child each, phases timed in-process; series 52.4 s, twin 41.7 s): the load 7.5 s (pyarrow's parse 6.9) against
0.9; conversion and checks 3.2 against 2.4 (the column tests 0.4 s: first touch of the 1.7 GB mapped cache); the
tokenising pass 41.3 against 38.3, where at 10k the two were even (not found why).

Then JSON Lines chunks parsed on a pool as wide as the CPUs (file_cache.parse_threads; pyarrow's own pool shrinks to
one thread under OMP_NUM_THREADS=1): write_cache of the 10k file 1.45 -> 0.70 s at OMP_NUM_THREADS=1, 0.76-0.80 ->
0.74 s unset (in one process, medians of 3). 10k records, 5 rounds alternating, fresh children:

| OMP_NUM_THREADS | series JSONL s | twin s | Parquet s | JSONL / twin | Parquet / twin |
|---|---|---|---|---|---|
| unset | 5.50 4.66 4.43 5.18 4.57 | 4.58 4.16 3.66 3.58 3.76 | 4.50 5.64 4.64 5.59 4.30 | 0.83 0.89 0.83 0.69 0.82 (0.83) | 1.02 0.74 0.79 0.64 0.87 (0.79) |
| 1 | 4.88 4.74 4.76 4.90 5.40 | 3.90 4.05 4.54 4.52 4.32 | 5.23 5.49 4.65 5.10 5.41 | 0.80 0.85 0.95 0.92 0.80 (0.85) | 0.75 0.74 0.98 0.89 0.80 (0.80) |

Parquet's tokenising pass took 4.43 / 4.49 s against JSONL's 3.91 / 3.73 in alternating single children (phases
timed in-process), though the map gets the same input columns and chunks in both, and reading every series from the
store plus its prefix statistics takes the same ~0.12 s on float32 and float64 (measured in one process); the cause
was not found, so Parquet sits at 0.79-0.80x where JSONL now sits at 0.83-0.85x.

Next session (2026-12-07, later; same code; the last four 100k rounds and the all-paths run below after Parquet was
read without pyarrow's pre-buffering, which changed its memory, not its time), a quiet machine on which the twin ran faster (2.8-3.0 s at 10k against 3.5-4.6 above). Alternating rounds
of fresh children (`work_s`; ratio of records/s against the twin per round):

| N, OMP_NUM_THREADS | series JSONL s | twin s | Parquet s | JSONL / twin | Parquet / twin |
|---|---|---|---|---|---|
| 1k, unset | 0.38 0.37 0.37 0.37 0.35 0.36 0.35 | 0.30 0.30 0.31 0.29 0.34 0.31 0.30 | 0.38 0.33 0.32 0.32 0.31 0.30 0.30 | 0.80 0.80 0.84 0.78 0.98 0.87 0.86 (0.84) | 0.81 0.90 0.96 0.91 1.10 1.04 0.99 (0.96) |
| 10k, unset | 3.51 3.31 3.43 3.49 3.39 3.36 3.48 | 2.90 2.97 2.96 2.92 2.90 3.00 2.82 | 3.04 3.28 3.04 2.91 2.88 3.03 2.93 | 0.83 0.90 0.86 0.84 0.85 0.89 0.81 (0.85) | 0.95 0.90 0.97 1.00 1.00 0.99 0.96 (0.97) |
| 10k, 1 | 3.46 3.23 3.46 3.47 3.26 3.40 3.63 | 2.87 2.89 2.89 2.82 2.82 2.94 3.04 | 2.96 2.94 2.93 3.00 3.12 3.21 3.11 | 0.83 0.89 0.83 0.81 0.87 0.86 0.84 (0.84) | 0.97 0.98 0.99 0.94 0.90 0.92 0.98 (0.97) |
| 100k, unset | 35.8 33.96 33.54 36.68 34.68 | 27.9 26.59 27.05 27.75 27.28 | 27.6 27.90 29.48 28.53 28.63 | 0.78 0.78 0.81 0.76 0.79 (0.78) | 1.01 0.95 0.92 0.97 0.95 (0.95) |

The Parquet deficit of the rounds above did not come back (0.95-0.97x). At 100k JSONL stays under 0.8x; phases timed
in-process (one child each, series / twin / Parquet): load 7.16 / 0.10 / 1.95 s, conversion and checks 2.10 / 1.89 /
2.55, tokenising pass 25.25 / 27.22 / 26.69. The load is pyarrow's JSON reader converting 217M numbers from text:
parsing alone 5.9-6.3 s wall, 11.5-12.3 CPU s on two threads (~160 MB/s per core; ~480 MB/s when the series field is
skipped, so the conversion of the numbers is two thirds of it); writing the stream adds ~0.5 s. Parquet's heap at
100k was 1182 MiB with pre-buffering (every row group read held until the file was closed), 762 without (647-687 at
10k). All paths, `--sizes 1000,10000` in one run (cells: work s, records/s, peak RSS / heap MiB):

| path | N=1k | N=10k |
|---|---|---|
| tsconvert | 0.4 s, 2571/s, 83 / 39 | 4.4 s, 2268/s, 83 / 40 |
| tsconvert parquet | 0.6 s, 1664/s, 189 / 125 | 4.8 s, 2077/s, 226 / 161 |
| validate jsonl | 0.2 s, 5112/s, 36 / 19 | 2.1 s, 4828/s, 40 / 19 |
| validate parquet | 0.1 s, 6766/s, 137 / 91 | 1.2 s, 8214/s, 154 / 106 |
| get_dataset | 0.4 s, 2612/s, 1108 / 585 | 3.7 s, 2707/s, 1249 / 651 |
| get_dataset parquet | 0.3 s, 3162/s, 1104 / 578 | 3.3 s, 3075/s, 1177 / 653 |
| get_dataset text | 0.3 s, 3337/s, 1090 / 585 | 3.2 s, 3161/s, 1113 / 622 |
| get_dataset stream | 1.0 s, 980/s, 1136 / 744 | 5.3 s, 1904/s, 1239 / 846 |
| stream parquet | 0.9 s, 1174/s, 1106 / 685 | 4.9 s, 2043/s, 1190 / 795 |
| train stream (20 steps) | 8.9 s, 9/s, 1420 / 993 | 8.5 s, 9/s, 1462 / 1038 |

Then each record's series parsed by simdjson and the rest by pyarrow (tsplugin/llamafactory/series_text.py; the
cache written through pa.OSFile). write_cache of the 100k file alone, alternating: 6.75 / 6.26 / 6.38 / 6.28 s
before, 6.18 / 5.89 (Python file object) and 4.49 / 4.88 s (OSFile) after; CPU 12-13 s -> 6.4-7.2 s. Alternating
rounds of fresh children, same machine and session:

| N, OMP_NUM_THREADS | series JSONL s | twin s | Parquet s | JSONL / twin | Parquet / twin |
|---|---|---|---|---|---|
| 1k, unset | 0.45 0.37 0.50 0.48 0.38 0.37 0.37 | 0.33 0.35 0.33 0.32 0.30 0.31 0.32 | 0.42 0.35 0.35 0.34 0.33 0.32 0.32 | 0.73 0.95 0.65 0.66 0.81 0.83 0.87 (0.81) | 0.78 1.01 0.94 0.93 0.93 0.96 0.99 (0.94) |
| 10k, unset | 3.40 3.42 3.30 3.38 3.35 3.40 3.37 | 2.90 2.99 3.14 2.93 2.88 3.02 2.94 | 3.05 3.07 3.02 3.03 3.12 3.10 3.36 | 0.85 0.87 0.95 0.87 0.86 0.89 0.87 (0.87) | 0.95 0.97 1.04 0.96 0.92 0.97 0.87 (0.96) |
| 10k, 1 | 3.49 3.54 3.29 3.80 3.23 | 3.07 3.04 3.13 3.07 2.95 | 2.97 3.10 3.24 3.10 3.23 | 0.88 0.86 0.95 0.81 0.91 (0.88) | 1.03 0.98 0.97 0.99 0.91 (0.98) |
| 100k, unset | 33.54 34.49 32.30 | 30.22 27.95 28.06 | 30.87 29.46 29.11 | 0.90 0.81 0.87 (0.87) | 0.98 0.95 0.96 (0.96) |

At 100k the JSONL load is 5.30 s (7.46 CPU s) instead of 7.16 (13.46); conversion and checks 2.07 s, tokenising
pass 26.02 (phases timed in-process, one child). At 1k (two 8 MiB chunks) the two parses no longer run side by
side (simdjson holds the GIL), which costs about what the faster parse saves. Two more 1k runs of 9 rounds: JSONL /
twin 0.74 0.75 0.80 0.73 0.86 0.74 0.82 0.79 0.74 (0.75) and 0.70 0.90 0.86 0.77 1.01 0.90 0.76 0.77 0.81 (0.81);
Parquet 0.90 0.84 0.82 0.96 0.84 0.99 0.80 0.98 0.93 (0.93) and 0.96 0.90 0.98 0.92 1.22 0.93 0.94 1.00 0.94
(0.94); pooled over the 25 rounds JSONL 0.79x, Parquet 0.94x. In-process phases at 1k: load 0.08 s against the
twin's 0.02, conversion and checks 0.03 against 0.02, tokenising 0.25-0.27 both. The 1k JSONL child of the code
before simdjson (a worktree at 271daff) alternated with this one: 0.362 0.408 0.423 0.396 0.457 0.354 s against
0.347 0.352 0.435 0.370 0.438 0.381 s (CPU 0.42-0.53 against 0.35-0.45).
Then one thread at a time splits (file_cache._SPLITTING; the others read with pyarrow, which does not hold the GIL):
10k, 5 rounds: JSONL 3.27 3.27 3.05 3.17 3.25 s, twin 2.87 2.82 2.97 2.89 2.89, Parquet 3.04 2.88 3.05 2.90 2.96;
JSONL / twin 0.88 0.86 0.97 0.91 0.89 (0.89), Parquet 0.94 0.98 0.97 1.00 0.98 (0.98). 1k, 9 rounds: JSONL / twin
0.75 0.71 0.84 0.82 0.84 0.81 0.71 0.77 0.80 (0.80), Parquet 0.93 (0.90-1.03); over all 34 rounds at 1k JSONL
0.795x. 100k, 2 rounds: JSONL 33.63 34.85 s, twin 28.40 27.35, Parquet 28.88 29.46: 0.84 0.78, Parquet 0.98 0.93;
over the 5 rounds with simdjson JSONL 0.84x (0.78-0.90), Parquet 0.96x.
Heap of the in-memory JSONL path with simdjson (one child each): 590 / 667 / 663 MiB at 1k / 10k / 100k.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from lf_output import lf_output_to, offline

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = "chatts8b_nothink"
PATHS = ("tsconvert", "tsconvert parquet", "validate jsonl", "validate parquet", "get_dataset", "get_dataset parquet",
         "get_dataset text", "get_dataset stream", "stream parquet", "train stream")
STREAMING = ("get_dataset stream", "stream parquet", "train stream")
TORCH_PATHS = ("train stream", "prepare")  # the children that run a model (and torch's thread pool)


# ----------------------------------------------------------------------------- data


def generate(work: Path, n: int, min_points: int, max_points: int, seed: int = 0) -> int:
    """N GDSH-shaped records (gdsh.json + csv/*.csv); returns the total number of points."""
    rng = np.random.default_rng(seed)
    csv_dir = work / "csv"
    csv_dir.mkdir(parents=True, exist_ok=True)
    total = 0
    with open(work / "gdsh.jsonl", "w", encoding="utf-8") as f:
        for i in range(n):
            length = int(rng.integers(min_points, max_points + 1))
            x = 50 + 3 * np.sin(np.arange(length) / rng.uniform(20, 200)) + rng.normal(0, 0.4, length)
            (csv_dir / f"s{i:06d}.PV.csv").write_text("value\n" + "\n".join(np.char.mod("%.4f", x)) + "\n")
            record = {"messages": [{"role": "user", "content": f"Sensor {i}: <image> Is there an anomaly?"},
                                   {"role": "assistant", "content": '{"is_anomaly": false}'}], "images": [f"s{i:06d}.PV.jpg"]}
            f.write(json.dumps(record) + "\n")
            total += length
    return total


def write_text_twin(data: Path, patch: int, profile: str) -> None:
    """ts.jsonl's records with each placeholder -> prefix + one filler token per patch (plugin_overhead's twin)."""
    from plugin_overhead import same_length_twin

    with open(data / "ts.jsonl", encoding="utf-8") as src, open(data / "text.jsonl", "w", encoding="utf-8") as out:
        for line in src:
            out.write(json.dumps(same_length_twin(json.loads(line), patch, ".", profile), ensure_ascii=False) + "\n")
    info_path = data / "dataset_info.json"
    info = json.loads(info_path.read_text())
    info["text"] = {"file_name": "text.jsonl", "columns": {"prompt": "input", "response": "output"}}
    info_path.write_text(json.dumps(info, indent=2))


# ----------------------------------------------------------------------------- children


def lf_args(model: Path, data: Path, dataset: str, out: Path, cache: Path, **overrides) -> dict:
    args = dict(model_name_or_path=str(model), stage="sft", do_train=True, finetuning_type="lora", lora_target="all",
                lora_rank=8, dataset=dataset, dataset_dir=str(data), template=TEMPLATE, cutoff_len=8192,
                overwrite_cache=True, cache_dir=str(cache), output_dir=str(out), overwrite_output_dir=True,
                logging_steps=1, save_strategy="no", report_to="none", per_device_train_batch_size=4,
                learning_rate=1e-4, bf16=False, seed=42, disable_tqdm=True, max_steps=20, buffer_size=1)
    args.update(overrides)
    return args


class AnonPeak:
    """Peak RssAnon of this process, sampled from /proc/self/status every 20 ms: the heap alone, without the
    file-backed pages that ru_maxrss also counts (Arrow files `datasets` memory-maps, shared libraries)."""

    def __init__(self) -> None:
        import threading

        self.peak = 0
        self.done = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def sample(self) -> None:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("RssAnon:"):
                    self.peak = max(self.peak, int(line.split()[1]))

    def run(self) -> None:
        while not self.done.wait(0.02):
            self.sample()

    def stop(self) -> float:
        self.done.set()
        self.thread.join()
        self.sample()
        return self.peak / 1024


def child(kind: str, work: Path, args: argparse.Namespace) -> dict:
    """Run one path; its measurements (records, tokens, seconds) and the peak of its heap (RssAnon, MiB)."""
    anon = AnonPeak()
    result = run_path(kind, work, args)
    return {**result, "anon_mib": anon.stop()}


def run_path(kind: str, work: Path, args: argparse.Namespace) -> dict:
    data = work / "data"
    if kind.startswith("tsconvert"):
        import converters.cli  # noqa: F401  (imported before the clock starts, as for every path)
        import converters.convert  # noqa: F401

        start = time.perf_counter()
        code = convert_records(work, "tsp" if kind.endswith("parquet") else "ts", kind.endswith("parquet"))
        return {"exit": code, "work_s": time.perf_counter() - start}
    if kind.startswith("validate"):
        from converters.validate import run_validate

        start = time.perf_counter()
        code = run_validate(data / ("tsp.parquet" if kind.endswith("parquet") else "ts.jsonl"), quiet=True)
        return {"exit": code, "work_s": time.perf_counter() - start}
    if kind == "prepare":
        return prepare(work, args.paths.split(","))
    import tsplugin._bootstrap  # noqa: F401  (hooks, also without the .pth)
    import llamafactory.data  # noqa: F401
    import llamafactory.train.tuner  # noqa: F401

    with lf_output_to(None if args.verbose else work / "lf.log"):
        if kind == "train stream":
            from llamafactory.train.tuner import run_exp

            run_exp(lf_args(work / "model", data, "ts", work / "run", work / f"cache_{os.getpid()}", streaming=True,
                            max_steps=args.steps, per_device_train_batch_size=args.batch))
            runtime = json.loads((work / "run" / "train_results.json").read_text())["train_runtime"]
            return {"steps": args.steps, "records": args.steps * args.batch, "work_s": runtime}
        from plugin_overhead import tokenized

        dataset = {"get_dataset": "ts", "get_dataset parquet": "tsp", "get_dataset text": "text",
                   "get_dataset stream": "ts", "stream parquet": "tsp"}[kind]
        streaming = kind in STREAMING
        start, cpu = time.perf_counter(), time.process_time()
        ds, get_s, get_cpu_s = tokenized(lf_args(work / "model", data, dataset, work / "o", work / f"cache_{os.getpid()}",
                                                 streaming=streaming))
        read = time.perf_counter()
        records = tokens = 0
        for row in ds:  # in memory: every column read back from Arrow (series too); streamed: the whole pipeline runs here
            records += 1
            tokens += len(row["input_ids"])
        if streaming:
            return {"records": records, "tokens": tokens, "work_s": time.perf_counter() - start, "cpu_s": time.process_time() - cpu}
        return {"records": records, "tokens": tokens, "work_s": get_s, "cpu_s": get_cpu_s, "read_s": time.perf_counter() - read}


def convert_records(work: Path, name: str, parquet: bool) -> int:
    from converters.cli import main as tsconvert

    return tsconvert([str(work / "gdsh.jsonl"), "--csv-dir", str(work / "csv"), "--time-col", "", "-o", str(work / "data"),
                      "--workers", "1", "-q", "--name", name, *(["--file-type", "parquet"] if parquet else [])])


def measure(kind: str, work: Path, args: argparse.Namespace) -> dict:
    """One path in a fresh child; wall seconds and ru_maxrss (MiB) of that child."""
    cmd = [sys.executable, __file__, "--child", kind, "--work", str(work), "--steps", str(args.steps),
           "--batch", str(args.batch), "--paths", args.paths] + (["--verbose"] if args.verbose else [])
    env = {**os.environ, "HF_DATASETS_CACHE": str(work / "hf_cache")}
    if kind in TORCH_PATHS:  # torch's intra-op threads on a shared CPU: one, unless the caller says otherwise
        env["OMP_NUM_THREADS"] = os.environ.get("OMP_NUM_THREADS", "1")
    # The data paths run in the caller's environment, as a single-GPU `llamafactory-cli train` does: pyarrow sizes
    # its thread pool from OMP_NUM_THREADS (torchrun sets it to 1 for several GPUs; run the bench under
    # OMP_NUM_THREADS=1 to see that case).
    # Each child starts without the previous step's dirty pages: the write-back of GBs of generated data (or of the
    # last child's Arrow cache) otherwise throttles this child's cache writes (seen: 99 s against 65-79 s at 100k).
    os.sync()
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, env=env, cwd=ROOT, text=True)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    shutil.rmtree(work / "hf_cache", ignore_errors=True)
    for cache in work.glob("cache_*"):
        shutil.rmtree(cache, ignore_errors=True)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{kind}: child failed (exit {os.waitstatus_to_exitcode(status)}); see {work / 'lf.log'} or rerun with --verbose")
    result = json.loads(out.strip().splitlines()[-1])
    return {**result, "wall": wall, "rss_mib": usage.ru_maxrss / 1024}


# ----------------------------------------------------------------------------- main


def slope(sizes: list[int], values: list[float]) -> float:
    """Least-squares MiB per 10k records."""
    if len(sizes) < 2:
        return float("nan")
    return float(np.polyfit(np.asarray(sizes, float) / 1e4, np.asarray(values, float), 1)[0])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000,10000", help="record counts, comma-separated (default 1000,10000)")
    parser.add_argument("--min-points", type=int, default=256, help="shortest series (default 256)")
    parser.add_argument("--max-points", type=int, default=4096, help="longest series (default 4096)")
    parser.add_argument("--steps", type=int, default=20, help="training steps of the streaming run (default 20)")
    parser.add_argument("--batch", type=int, default=4, help="per-device batch of the streaming run (default 4)")
    parser.add_argument("--paths", default=",".join(PATHS), help=f"which paths, comma-separated (default all: {', '.join(PATHS)})")
    parser.add_argument("--keep", type=Path, default=None, help="keep the generated data in this folder")
    parser.add_argument("--verbose", action="store_true", help="show LLaMA-Factory's output (default: WORK/lf.log)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    offline()
    if args.child:
        print(json.dumps(child(args.child, args.work, args)))
        return 0

    sizes = [int(s) for s in args.sizes.split(",")]
    paths = [p.strip() for p in args.paths.split(",")]
    unknown = sorted(set(paths) - set(PATHS))
    if unknown:
        raise SystemExit(f"--paths: unknown {unknown}; valid: {', '.join(PATHS)}")
    base = args.keep or Path(tempfile.mkdtemp(prefix="data_scale_"))
    results: dict[str, dict[int, dict]] = {p: {} for p in paths}
    facts: dict[int, dict] = {}
    try:
        for n in sizes:
            work = base / f"n{n}"
            work.mkdir(parents=True, exist_ok=True)
            start = time.perf_counter()
            points = generate(work, n, args.min_points, args.max_points)
            print(f"N={n}: generated {points} points ({points / n:.0f} per record) in {time.perf_counter() - start:.1f} s", flush=True)
            prepared = measure("prepare", work, args)
            for path in paths:
                if path == "get_dataset text":
                    write_text_twin(work / "data", prepared["patch"], prepared["profile"])  # from ts.jsonl, whichever step wrote it
                results[path][n] = measure(path, work, args)
                r = results[path][n]
                print(f"  {path:<20} {r['wall']:8.1f} s  {r['rss_mib']:8.1f} MiB  {json.dumps({k: v for k, v in r.items() if k not in ('wall', 'rss_mib')})}", flush=True)
            facts[n] = {"points": points, **{f"{name} MiB": (work / "data" / name).stat().st_size / 2**20
                                             for name in ("ts.jsonl", "tsp.parquet") if (work / "data" / name).exists()}}
            if args.keep is None:
                shutil.rmtree(work, ignore_errors=True)
    finally:
        if args.keep is None:
            shutil.rmtree(base, ignore_errors=True)
    report(sizes, paths, results, facts, args)
    return 0


def prepare(work: Path, paths: list[str]) -> dict:
    """The tiny model and the converted files the tsconvert paths would not write (untimed); patch size and profile.
    A child like the others: the parent stays small (a forked child's ru_maxrss starts from its parent's RSS)."""
    from tsplugin.build.init_model import build_model
    from tsplugin.processing import TimeSeriesProcessor
    from tsplugin.processing.profiles import INIT_MODEL_PROFILES

    with lf_output_to(work / "lf.log"):
        build_model(work / "model", arch="qwen3ts", preset="tiny", seed=0)
    if "tsconvert" not in paths:
        convert_records(work, "ts", parquet=False)
    if "tsconvert parquet" not in paths:
        convert_records(work, "tsp", parquet=True)
    return {"patch": TimeSeriesProcessor.from_pretrained(work / "model").patch_size, "profile": INIT_MODEL_PROFILES["qwen3ts"]}


def report(sizes: list[int], paths: list[str], results: dict, facts: dict, args: argparse.Namespace) -> None:
    print("=== data scale summary ===")
    print(f"records of one series, {args.min_points}-{args.max_points} points (uniform); tiny qwen3ts model, template {TEMPLATE}; "
          f"each path a fresh child process; s = the work alone (after imports; training: train_runtime), rec/s from it")
    header = f"{'path':<20}" + "".join(f" | {f'N={n}':>36}" for n in sizes) + f" | {'slope MiB/10k rec':>18}"
    print(header)
    print(f"{'':<20}" + "".join(f" | {'s   rec/s   peak RSS   heap':>36}" for _ in sizes) + f" | {'RSS     heap':>18}")
    for path in paths:
        cells = []
        for n in sizes:
            r = results[path][n]
            records = r.get("records", n)
            cells.append(f" | {r['work_s']:6.1f} {records / r['work_s']:7.1f} {r['rss_mib']:10.1f} {r['anon_mib']:9.1f}")
        s = slope(sizes, [results[path][n]["rss_mib"] for n in sizes])
        h = slope(sizes, [results[path][n]["anon_mib"] for n in sizes])
        print(f"{path:<20}" + "".join(cells) + f" | {s:8.1f} {h:8.1f}")
    for n in sizes:
        f = facts[n]
        line = f"N={n}: {f['points']} points"
        if "ts.jsonl MiB" in f and "tsp.parquet MiB" in f:
            line += (f"; on disk JSONL {f['ts.jsonl MiB']:.1f} MiB, Parquet {f['tsp.parquet MiB']:.1f} MiB "
                     f"({f['tsp.parquet MiB'] / f['ts.jsonl MiB']:.2f}x)")
        for a, b, what in (("get_dataset", "get_dataset text", "get_dataset records/s, series / text-only twin"),
                           ("get_dataset parquet", "get_dataset", "get_dataset records/s, Parquet / JSONL"),
                           ("stream parquet", "get_dataset stream", "streamed records/s, Parquet / JSONL")):
            if a in results and b in results:
                ra, rb = results[a][n], results[b][n]
                line += f"; {what} {(ra['records'] / ra['work_s']) / (rb['records'] / rb['work_s']):.2f}x"
                if "cpu_s" in ra and "cpu_s" in rb:  # CPU seconds: less swayed than wall time by other jobs on the CPU
                    line += f" (CPU time {(ra['records'] / ra['cpu_s']) / (rb['records'] / rb['cpu_s']):.2f}x)"
        if "get_dataset" in results and "get_dataset text" in results:
            ra, rb = results["get_dataset"][n], results["get_dataset text"][n]
            line += f" (tokens {ra['tokens']} vs {rb['tokens']})"
            if "read_s" in ra and "read_s" in rb:
                line += f"; then every row read back (series included): {ra['read_s']:.1f} s vs {rb['read_s']:.1f} s"
        print(line)


if __name__ == "__main__":
    sys.exit(main())
