# Stages 1-3: acquire the raw photos, scan them into a manifest, and build Lab HDF5 shards.


rule fetch:
    """Copy the built-in photos, or download (and safely extract) a URL source."""
    output:
        raw=directory(f"{RESOURCES}/raw"),
        log_tsv=f"{RESULTS}/download.tsv",
    log:
        f"{RESULTS}/logs/fetch.log",
    conda:
        CONDA_ENV
    params:
        source=SOURCE,
        sha256=config["dataset"]["sha256"],
        archive=config["dataset"]["archive"],
    script:
        "../scripts/fetch.py"


checkpoint scan:
    """One manifest row for every input file: bytes, sha256, size, split, shard, status."""
    input:
        scan_inputs,
    output:
        tsv=f"{RESULTS}/scan.tsv",
    log:
        f"{RESULTS}/logs/scan.log",
    benchmark:
        f"{RESULTS}/benchmarks/scan.tsv"
    conda:
        CONDA_ENV
    threads: 4
    params:
        root=raw_root,
        stamp=scan_stamp,
        include=config["dataset"]["include"],
        follow_external_links=config["dataset"]["follow_external_links"],
        split=config["split"],
        shards=config["shards"],
        max_pixels=config["max_pixels"],
        min_side=config["min_side"],
    script:
        "../scripts/scan.py"


rule shard:
    """Decode, resize and convert one shard's images to Lab, into one HDF5 file."""
    input:
        # ancient: a rescan that leaves this shard's photos alone does not rebuild it
        # (its members' digest, a param, does when they change).
        scan=ancient(f"{RESULTS}/scan.tsv"),
        after_scan=wait_for_scan,
    output:
        h5=f"{RESULTS}/shards/{{split}}-{{shard}}.h5",
        status=f"{RESULTS}/shards/{{split}}-{{shard}}.tsv",
    log:
        f"{RESULTS}/logs/shard/{{split}}-{{shard}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/shard/{{split}}-{{shard}}.tsv"
    conda:
        CONDA_ENV
    resources:
        mem_mb=1000,
    params:
        members=shard_photos_digest,
        root=raw_root,
        preprocess=preprocess_params(),
        compression=config["shard_compression"],
    script:
        "../scripts/shard.py"


rule manifest:
    """Fold the shards' decode statuses into the manifest; count per split and reason."""
    input:
        scan=f"{RESULTS}/scan.tsv",
        status=all_shard_status,
    output:
        manifest=report(
            f"{RESULTS}/manifest.tsv",
            caption="../report/manifest.rst",
            category="2. Data",
        ),
        summary=report(
            f"{RESULTS}/summary.tsv",
            caption="../report/summary.rst",
            category="2. Data",
        ),
    log:
        f"{RESULTS}/logs/manifest.log",
    conda:
        CONDA_ENV
    script:
        "../scripts/manifest.py"
