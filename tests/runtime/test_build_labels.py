"""A build's labels go into the Dockerfile as one LABEL line: one build step, not one per
label (the legacy builder's), and the same labels on the image."""

from __future__ import annotations

import random
import time

import docker

from app.runtime import containers, images
from tests import lab

LABELS = {"slipway.app": "12", "slipway.deployment": "34"}


def test_the_labels_become_one_line_at_the_end(tmp_path):
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text('FROM scratch\n# a comment\nCMD ["x"]')  # no newline at the end
    assert images._labelled_dockerfile(dockerfile, LABELS) == (
        'FROM scratch\n# a comment\nCMD ["x"]\nLABEL slipway.app="12" slipway.deployment="34"\n'
    )


def test_the_engine_gets_the_labels_when_a_line_is_not_safe(tmp_path):
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text("FROM scratch\n")
    assert images._labelled_dockerfile(dockerfile, {"a": "two words"}) is None
    assert images._labelled_dockerfile(dockerfile, {"a": "$HOME"}) is None
    assert images._labelled_dockerfile(dockerfile, {"a": 'x"y'}) is None
    assert images._labelled_dockerfile(dockerfile, {}) is None
    for text in ("FROM scratch\nCMD x \\\n", "FROM scratch\nCMD x `  \n\n# c\n", "# only\n", ""):
        dockerfile.write_text(text)  # it would continue into our line, or has no instruction
        assert images._labelled_dockerfile(dockerfile, LABELS) is None, text
    dockerfile.write_bytes(b"FROM scratch\n# \xff\n")
    assert images._labelled_dockerfile(dockerfile, LABELS) is None
    assert images._labelled_dockerfile(tmp_path / "missing", LABELS) is None


def _build(tmp_path, dockerfile_text: str, labels: dict[str, str]):
    (tmp_path / "Dockerfile").write_text(dockerfile_text)
    (tmp_path / "keep.txt").write_text("kept\n")
    (tmp_path / "secret.txt").write_text("ignored\n")
    (tmp_path / ".dockerignore").write_text("# not this one\nsecret.txt\n")
    app_id = random.randrange(10**9, 2 * 10**9)  # no one else's image carries it
    lines: list[str] = []
    tag = containers.image_tag(app_id, 1)
    image_id = containers.build_image(
        tmp_path, tmp_path / "Dockerfile", tag, {containers.LABEL_APP: str(app_id)} | labels,
        on_line=lines.append, should_stop=lambda: False,
    )  # fmt: skip
    client = docker.from_env()
    try:
        image = client.images.get(image_id)
        listing = client.containers.run(image_id, ["/bin/busybox", "find", "/ctx"], remove=True)
        return image.labels, lines, listing.decode().split()
    finally:
        client.images.remove(image_id, force=True)
        client.close()


def test_a_build_has_every_label_in_one_step_and_the_same_context(app, tmp_path):
    lab.ensure_base_image()
    labels, lines, files = _build(
        tmp_path, f"FROM {lab.BASE_IMAGE}\nCOPY . /ctx\nRUN echo {time.time()}\n", LABELS
    )
    assert labels[containers.LABEL_APP].isdigit()
    assert {k: labels[k] for k in LABELS} == LABELS
    steps = [line for line in lines if line.startswith("Step ")]
    assert len([s for s in steps if " : LABEL " in s]) == 1, steps
    assert steps[-1].startswith("Step 4/4 : LABEL ")
    # .dockerignore still applies, and the Dockerfile Slipway sent is not in the context.
    assert "/ctx/keep.txt" in files and "/ctx/Dockerfile" in files
    assert "/ctx/secret.txt" not in files
    assert not [f for f in files if "slipway-dockerfile" in f], files


def test_a_label_that_cannot_go_in_the_dockerfile_still_labels_the_image(app, tmp_path):
    lab.ensure_base_image()
    labels, lines, files = _build(
        tmp_path, f"FROM {lab.BASE_IMAGE}\nCOPY . /ctx\n", {"note": "two words"}
    )
    assert labels["note"] == "two words"
    assert "/ctx/secret.txt" not in files and "/ctx/keep.txt" in files
