#!/bin/bash
# Superseded by the campaign job kind: `optiladder campaign run --kind gw` (docs/gw.md); kept as the record of how
# the first labels were made.
# G0W0@PBE labels (gpaw-g0w0-v2) of the ≤ 2-atom crystals used here; existing records are skipped by material id
# only when --name is given, so run once. Validation set first (Shishkin & Kresse), then further labels.
set -u
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
OUT=${OUT:-dataset/gw/gpaw-g0w0-v2}
HERE=$(cd "$(dirname "$0")" && pwd)
for id in agm003157600 agm003157621 agm003157414 agm003157747 agm002176626 agm003157770 agm003273604 \
          agm003157746 agm003157626 agm003283740 agm003273599 agm003157736 agm003157693 agm003157673 agm003157567; do
  nice optiladder wavefunction gw "$id" --name "$id" --out "$OUT"
done
nice optiladder wavefunction gw "$HERE/structures/C_diamond.vasp" --name C-diamond --out "$OUT"
