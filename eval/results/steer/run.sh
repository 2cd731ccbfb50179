#!/bin/sh
# The steering examples quoted in the README, on the shipped vectors (about 3 min on 2 CPU cores):
#   sh eval/results/steer/run.sh
set -e
cd "$(dirname "$0")"
P="I lost my job today and I can't pay rent next week."
steerlab steer "$P" --chat --emotion hopeful --alpha 4 > hopeful_alpha4.txt
steerlab steer "$P" --chat --ablate desperate > ablate_desperate.txt
steerlab steer "$P" --chat --ablate desperate:zero > ablate_desperate_zero.txt
head -3 ../../data/neutral_prompts.jsonl > /tmp/steerlab_three_prompts.jsonl
steerlab steer --prompts-file /tmp/steerlab_three_prompts.jsonl --chat --emotion hopeful --sweep-alpha 0,2,4,8 \
  > sweep_alpha.txt
