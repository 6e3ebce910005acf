# Image colorization: photos -> Lab HDF5 shards -> trained autoencoder -> colorized photos.
# The rules live in workflow/rules/, the logic in the `colorize` library (src/colorize/).
from snakemake.utils import min_version

min_version("9.0")


configfile: "config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/model.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/external.smk"


rule all:
    default_target: True
    input:
        all_targets(),
