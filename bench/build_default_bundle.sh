#!/usr/bin/env bash
# Rebuild exports/default/ from the real anime data, with the project's own commands only.
#
#   bash bench/build_default_bundle.sh
#
# Needs the shared data folder ANIMEREC_SHARED_DATA (default ../shared/data beside the repository;
# a relative value is read from the repository root), which holds the CooperUnion sample and the
# offline catalogue files, and about 40 minutes on a 2-core CPU. Nothing from that folder is copied
# into the repository: data/ is ignored, and the bundle's catalogue is the project's derived table
# (the model's items, in vocabulary order).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
export ANIMEREC_SHARED_DATA=${ANIMEREC_SHARED_DATA:-../shared/data}
FT=runs/anime-finetune/ckpt.pt
RK=runs/anime-ranker/ckpt.pt

# 1. Offline catalogue (MyAnimeList 17k CSV + bangumi-data + the MAL<->AniList id map): ~1 s.
$PY -m training catalog --offline "$ANIMEREC_SHARED_DATA/catalog" --out data/catalog.json.gz
# 2. Interactions: the CooperUnion 5k-user sample, titles matched by MAL id; users with >= 5 entries;
#    a seeded random 10% hold-out per user (the data has no times).
$PY -m training import cooperunion "$ANIMEREC_SHARED_DATA/anime/cooperunion-5k-users.zip" \
    --out data/anime-cu.parquet --catalog "$ANIMEREC_SHARED_DATA/catalog/mal-anime-17k.csv"
#    Every catalogue title joins the vocabulary, so the bundle can read and recommend titles the
#    sample has no interactions for (through their content vectors).
$PY -m training build data/anime-cu.parquet --out data/anime-cu --min-user-count 5 --seed 0 \
    --vocabulary-catalog data/catalog.json.gz
# 3. The catalogue in the dataset's vocabulary order (episode counts for the progress input,
#    franchise and genre features for the ranker, and the bundle's own catalogue).
$PY -m training vocab-catalog --data data/anime-cu --catalog data/catalog.json.gz \
    --out data/anime-cu/catalog.json.gz
# 4. Train: masked pretraining, fine-tuning on held-out additions, the listwise ranker.
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}  # one thread per process: two jobs on two cores must not spin against each other
$PY -m training pretrain --config training/configs/anime-pretrain.toml
$PY -m training finetune --config training/configs/anime-finetune.toml
$PY -m training ranker --config training/configs/anime-ranker.toml
# 5. The anime hold-out table: ours next to the baselines.
$PY -m training evaluate --data data/anime-cu --protocol random \
    --models "popularity,itemknn,ease,ials,ours:$FT,ours:ft=$FT+ranker=$RK" \
    --score-models "bias,mf,ours:$FT,ours:ft=$FT+ranker=$RK" --out bench/results/anime-cu.json
# 6. Export with the parity gate (fp32 and int8 encoders), the evaluation recorded in the manifest.
$PY -m training export --finetuned "$FT" --ranker "$RK" --catalog data/anime-cu/catalog.json.gz \
    --out exports/default --name default --int8 --metrics bench/results/anime-cu.json
du -sh exports/default
