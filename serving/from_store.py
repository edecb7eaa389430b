"""The service image's entry point on a cluster: serve exactly the Bento the pod template names.

    python -m serving.from_store --port 3000

FLIGHTLINE_BENTO_TAG (`<task>_service:<version>`) and FLIGHTLINE_BENTO_URI (its export, in the
object store) are set by the task's `deployment` asset, which rolls the Deployment to a new
pair; the image itself never changes with the model and is never `:latest`. The Bento is
imported into the pod's own BentoML store, then `bentoml serve` runs it. A missing or wrong
export stops the container with the reason, which Kubernetes shows as the pod's back-off.
"""

import argparse
import os
import sys

from pipelines.platform.lib.deployment import BENTO_TAG_ENV, BENTO_URI_ENV


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=3000)
    args = parser.parse_args(argv)
    tag, uri = os.environ.get(BENTO_TAG_ENV), os.environ.get(BENTO_URI_ENV)
    if not tag or not uri:
        print(f"error: {BENTO_TAG_ENV} and {BENTO_URI_ENV} must name the Bento", file=sys.stderr)
        return 2
    from pipelines.platform.lib.packaging import import_exported

    try:
        bento = import_exported(uri, tag)
    except Exception as exc:
        print(f"error: cannot import Bento {tag} from {uri}: {exc}", file=sys.stderr)
        return 1
    print(f"serving {bento.tag} from {uri}", flush=True)
    bentoml = os.path.join(os.path.dirname(sys.executable), "bentoml")
    os.execv(
        bentoml, [bentoml, "serve", str(bento.tag), "--host", args.host, "--port", str(args.port)]
    )
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())
