#!/bin/sh
# Every per-model result the README's side-by-side tables read, for one built-in model, on its
# shipped vectors (vectors/MODEL/). Run from the repository root with steerlab installed:
#   sh eval/run_model.sh MODEL [PART ...]     PART: judged steer cross readers suites report llamacpp speed
# (all parts: ~90 min on 2 CPU cores). Then `python docs/render_results.py` renders the README and results pages.
set -e
M=${1:?usage: sh eval/run_model.sh MODEL [PART ...]}
shift
PARTS=${*:-judged steer cross readers suites report llamacpp speed}
cd "$(dirname "$0")/.."
R=eval/results/$M
B=eval/benchmarks/results
V=vectors/$M/emotions.safetensors
EXT=../shared/external/emotionscope   # EmotionScope's MIT data, a benchmark only (skipped when absent)
P="I lost my job today and I can't pay rent next week."
for part in $PARTS; do
  case $part in
  judged)
    # The reply reader refitted on written and the model's own judged replies (eval/labels/MODEL/), the
    # default reader chosen on held-out judged messages, written into the shipped file itself.
    J=eval/labels/$M
    steerlab fit-reader --model "$M" --vectors "$V" --judged "$J/labels.jsonl" --judged "$J/emotional/labels.jsonl" \
      --judged "$J/desperate/labels.jsonl" --judged "$J/scales/labels.jsonl" --judged "$J/hopeful/labels.jsonl" \
      --heldout eval/data/replies_heldout.jsonl --out "$V" --force --report "$B/model_replies_$M.json"
    # the two benchmarks of the reader share the pooled replies; in reader_limits the other built-in model reads them too
    C=${TMPDIR:-/tmp}/steerlab-pooled
    O=gemma-3-270m; [ "$M" = gemma-3-270m ] && O=smollm2-135m-instruct
    python eval/benchmarks/judged_weight.py --model "$M" --features "$C"
    python eval/benchmarks/reader_limits.py --model "$M" --also-read-by "$O" --features "$C" ;;
  steer)
    mkdir -p "$R/steer"
    steerlab steer "$P" --model "$M" --chat --emotion hopeful --alpha 4 > "$R/steer/hopeful_alpha4.txt"
    steerlab steer "$P" --model "$M" --chat --ablate desperate > "$R/steer/ablate_desperate.txt"
    steerlab steer "$P" --model "$M" --chat --ablate desperate:zero > "$R/steer/ablate_desperate_zero.txt"
    head -3 eval/data/neutral_prompts.jsonl > "$R/steer/three_prompts.jsonl"
    steerlab steer --model "$M" --prompts-file "$R/steer/three_prompts.jsonl" --chat --emotion hopeful \
      --sweep-alpha 0,2,4,8 > "$R/steer/sweep_alpha.txt"
    ;;
  cross)
    python eval/benchmarks/cross_corpus.py --vectors "$V" --external "$EXT" --out "$B/cross_corpus_$M.json" ;;
  readers)
    python eval/benchmarks/reader_validation.py --vectors "$V" --external "$EXT" --out "$B/reader_validation_$M.json" ;;
  suites)
    steerlab validate eval/suites/desperate_to_hopeful.yaml --model "$M" --vectors "$V" --n 64 \
      --out "$R/desperate_to_hopeful" --force
    steerlab validate eval/suites/gate.yaml --model "$M" --vectors "$V" --out "$R/gate" --force
    steerlab validate eval/suites/necessity.yaml --model "$M" --vectors "$V" --out "$R/necessity" --force
    steerlab validate eval/suites/dose_response.yaml --model "$M" --vectors "$V" --out "$R/dose_response" --force
    ;;
  report)
    mkdir -p "$R/report"
    steerlab report --model "$M" --vectors "$V" --out "/tmp/steerlab_report_$M.html" \
      --external "$EXT/intensity_scales.json" --json > "$R/report/numbers.json"
    ;;
  llamacpp)
    python eval/benchmarks/llamacpp_check.py --model "$M" ;;
  speed)
    python eval/benchmarks/extract_speed.py --model "$M" --out "$B/extract_speed_$M.json"
    python eval/benchmarks/suite_cost.py --model "$M" ;;
  *)
    echo "unknown part $part: use judged steer cross readers suites report llamacpp speed" >&2; exit 2 ;;
  esac
done
