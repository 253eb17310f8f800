"""The allow-lists in app.names accept ordinary values and refuse hostile ones."""

import pytest

from app import names

HOSTILE_FRAGMENTS = [";", "$(id)", "`id`", "|", "\n", "..", " ", "'", '"', "&", ">"]


@pytest.mark.parametrize("value", ["web", "api-v2", "a1", "x" + "y" * 62])
def test_slug_accepts(value):
    assert names.slug(value) == value


@pytest.mark.parametrize(
    "value",
    ["", "a", "Web", "1web", "-web", "web-", "web_api", "x" * 64, "we b", "web;id", "wéb"],
)
def test_slug_refuses(value):
    with pytest.raises(names.InvalidValue):
        names.slug(value)


@pytest.mark.parametrize(
    "value", ["main", "release/1.2", "feature/JIRA-12_fix", "v1.0.0", "user@work", "a+b"]
)
def test_branch_accepts(value):
    assert names.branch(value) == value


@pytest.mark.parametrize(
    "value",
    [
        "",
        "-x",
        "--upload-pack=touch /tmp/p",
        "a..b",
        "a/.hidden",
        "a.lock",
        "a/",
        "/a",
        "a//b",
        "a@{1}",
        "@",
        "a.",
        "a b",
        "a~1",
        "a^",
        "a:b",
        "a?",
        "a*",
        "a[",
        "a\\b",
        *(f"main{f}" for f in HOSTILE_FRAGMENTS),
    ],
)
def test_branch_refuses(value):
    with pytest.raises(names.InvalidValue):
        names.branch(value)


@pytest.mark.parametrize(
    "value",
    [
        "https://github.com/acme/web.git",
        "https://gitlab.example.com:8443/group/sub/repo",
        "ssh://git@github.com/acme/web.git",
        "ssh://git@git.example.com:2222/acme/web.git",
        "git@github.com:acme/web.git",
    ],
)
def test_git_url_accepts(value):
    assert names.git_url(value) == value


@pytest.mark.parametrize(
    "value",
    [
        "",
        "http://github.com/acme/web.git",
        "file:///etc/passwd",
        "/srv/repos/web.git",
        "./web",
        "ext::sh -c touch% /tmp/pwned",
        "-uhttps://github.com/a/b",
        "--upload-pack=touch /tmp/x",
        "git://github.com/acme/web.git",
        "https://user:token@github.com/acme/web.git",
        "https://token@github.com/acme/web.git",
        "https://github.com/acme/web.git;id",
        "https://github.com/acme/$(id).git",
        "https://github.com/acme/`id`.git",
        "https://github.com/acme/web.git|id",
        "https://github.com/acme/../../etc",
        "https://github.com/acme/web.git\nid",
        "https://github.com/acme/web.git?x=1",
        "https://127.0.0.1/acme/web.git",
        "https://localhost/acme/web.git",
        "https://169.254.169.254/latest/meta-data",
        "https://10.0.0.5/acme/web.git",
        "https://[::1]/acme/web.git",
        "git@127.0.0.1:acme/web.git",
        "-oProxyCommand=id@host:path",
        "git@host:-oProxyCommand=id",
    ],
)
def test_git_url_refuses(value):
    with pytest.raises(names.InvalidValue):
        names.git_url(value)


def test_git_url_internal_host_allowed_when_allow_listed():
    assert names.git_url("https://127.0.0.1:9418/r.git", ("127.0.0.1",))


@pytest.mark.parametrize("value", [".", "Dockerfile", "docker/Dockerfile.prod", "services/api"])
def test_relative_path_accepts(value):
    assert names.relative_path(value) == value


@pytest.mark.parametrize(
    "value",
    ["", "/etc/passwd", "-f", "../Dockerfile", "a/../../b", "..", "a b", "a;b", "$(id)", "a\nb"],
)
def test_relative_path_refuses(value):
    with pytest.raises(names.InvalidValue):
        names.relative_path(value)


@pytest.mark.parametrize("value", ["PATH", "_X", "DATABASE_URL", "a1"])
def test_env_key_accepts(value):
    assert names.env_key(value) == value


@pytest.mark.parametrize("value", ["", "1A", "A-B", "A B", "A=B", "A;B", "$(id)", "A\nB", "-A"])
def test_env_key_refuses(value):
    with pytest.raises(names.InvalidValue):
        names.env_key(value)


@pytest.mark.parametrize(
    "value",
    [
        "nginx",
        "nginx:1.27",
        "ghcr.io/acme/web:v1",
        "localhost:5000/web",
        "a/b/c:latest",
        "busybox@sha256:" + "a" * 64,
    ],
)
def test_image_accepts(value):
    assert names.image(value) == value


@pytest.mark.parametrize(
    "value", ["", "-v", "Nginx", "nginx:;id", "nginx $(id)", "nginx|id", "a//b", "nginx:"]
)
def test_image_refuses(value):
    with pytest.raises(names.InvalidValue):
        names.image(value)


@pytest.mark.parametrize("value", ["/", "/healthz", "/api/health?full=1"])
def test_health_path_accepts(value):
    assert names.health_path(value) == value


@pytest.mark.parametrize("value", ["", "health", "/a b", "/$(id)", "/a;b", "/a\nb", "/`x`"])
def test_health_path_refuses(value):
    with pytest.raises(names.InvalidValue):
        names.health_path(value)


@pytest.mark.parametrize("value", ["example.com", "app.example.com", "a-b.c.d", "localhost"])
def test_hostname_accepts(value):
    assert names.hostname(value) == value


@pytest.mark.parametrize(
    "value", ["", "-a.com", "a_b.com", "a b.com", "a.com`", "a.com'", "a.com\n", "ex*.com"]
)
def test_hostname_refuses(value):
    with pytest.raises(names.InvalidValue):
        names.hostname(value)


@pytest.mark.parametrize("value", ["us-east-1", "eu-central-1", "ap-southeast-2", "auto", "garage",
                                   "default", "fr-par", "us-gov-west-1", "my_zone"])  # fmt: skip
def test_s3_region_accepts(value):
    assert names.s3_region(value) == value


@pytest.mark.parametrize("value", ["", "US-EAST-1", "us east 1", "-us", "us-east-1\nx", "r" * 33,
                                   "eu/central", "../x", "us-east-1;", "région"])  # fmt: skip
def test_s3_region_refuses(value):
    with pytest.raises(names.InvalidValue, match="region"):
        names.s3_region(value)
