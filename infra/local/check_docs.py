#!/usr/bin/env python3
"""Checks that the documentation holds together, without network access:

* every relative link in README.md and docs/*.md points at a file or directory of the
  repository, and every `#anchor` at a heading of the target page (GitHub's heading slugs);
* every alert rule in infra/prometheus/rules.yml has a `runbook_url` annotation made of
  RUNBOOK_BASE and the anchor of a section of docs/operations.md named after the alert;
* every CloudWatch alarm in template.yaml has its own section in docs/operations.md;
* no tracked file points at documents outside the repository: the design and API documents the
  project was first written from (by file name or section sign) or tracker issue numbers. Facts
  live in docs/ (docs/devlake-api.md is this repository's own page and may be named).

Usage: check_docs.py [REPOSITORY_ROOT]   (default: the repository this file is in)
       check_docs.py --self-test          (runs it on a small made-up repository)
Exit status 1 with one line per problem when anything is wrong.
"""

import os
import re
import subprocess
import sys
import unicodedata

# The base every runbook_url starts with. A placeholder host: operators replace it with the
# address their copy of the repository is browsable at (docs/operations.md, "Runbook links").
RUNBOOK_BASE = "https://git.example.com/devlake-autopilot/blob/main/docs/operations.md"

# Pages a branch links to before the branch that writes them is merged. Links to them are
# reported as pending rather than broken until they exist; empty once every page is present.
PENDING_PAGES: set = set()

FENCE = re.compile(r"^\s*(```|~~~)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
# [text](target) and ![alt](target); the target ends at the first space or closing parenthesis.
LINK = re.compile(r"!?\[(?:[^\]\\]|\\.)*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
INLINE_CODE = re.compile(r"`+[^`]*`+")


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: inline markup dropped, lower case, punctuation other than
    `-` and `_` removed, spaces turned into `-`."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # links keep their text
    text = text.replace("`", "")
    text = re.sub(r"<[^>]+>", "", text)  # inline HTML
    text = text.strip().lower()
    out = []
    for ch in text:
        if ch in "-_ " or ch.isalnum():
            out.append("-" if ch == " " else ch)
        elif unicodedata.category(ch).startswith(("L", "N", "M")):
            out.append(ch)
    return "".join(out)


def markdown_lines(path):
    """The lines of a Markdown file outside fenced code blocks, with their numbers."""
    inside = False
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if FENCE.match(line):
                inside = not inside
                continue
            if not inside:
                yield number, line.rstrip("\n")


def anchors(path):
    seen = {}
    result = set()
    for _, line in markdown_lines(path):
        m = HEADING.match(line)
        if not m:
            continue
        base = slug(m.group(2))
        n = seen.get(base, 0)
        seen[base] = n + 1
        result.add(base if n == 0 else f"{base}-{n}")
    return result


def check_links(root, files, problems, pending):
    cache = {}

    def anchors_of(path):
        if path not in cache:
            cache[path] = anchors(path)
        return cache[path]

    for rel in files:
        path = os.path.join(root, rel)
        for number, line in markdown_lines(path):
            for target in LINK.findall(INLINE_CODE.sub("", line)):
                if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):
                    continue  # http:, https:, mailto: — not checked (no network)
                where = f"{rel}:{number}"
                file_part, _, anchor = target.partition("#")
                if file_part:
                    dest = os.path.normpath(os.path.join(os.path.dirname(path), file_part))
                    dest_rel = os.path.relpath(dest, root)
                    if dest_rel.startswith(".."):
                        problems.append(f"{where}: link leaves the repository: {target}")
                        continue
                    if not os.path.exists(dest):
                        if dest_rel in PENDING_PAGES:
                            pending.add(dest_rel)
                        else:
                            problems.append(f"{where}: no such file: {target}")
                        continue
                else:
                    dest = path
                if anchor:
                    if not dest.endswith(".md") or os.path.isdir(dest):
                        problems.append(f"{where}: anchor on a page that has no headings: {target}")
                    elif anchor not in anchors_of(dest):
                        problems.append(f"{where}: no heading for #{anchor} in {os.path.relpath(dest, root)}")


def check_runbooks(root, problems):
    operations = os.path.join(root, "docs", "operations.md")
    sections = anchors(operations)
    rules_path = os.path.join(root, "infra", "prometheus", "rules.yml")
    with open(rules_path, encoding="utf-8") as f:
        text = f.read()
    # Split the file into one chunk per rule; each chunk starts at its `- alert:` line.
    chunks = re.split(r"(?m)^\s*- alert:\s*", text)[1:]
    if not chunks:
        problems.append("infra/prometheus/rules.yml: no alert rules found")
    for chunk in chunks:
        alert = chunk.split()[0]
        m = re.search(r"(?m)^\s*runbook_url:\s*\"?([^\"\s]+)\"?\s*$", chunk)
        if not m:
            problems.append(f"infra/prometheus/rules.yml: {alert} has no runbook_url annotation")
            continue
        url = m.group(1)
        expected = f"{RUNBOOK_BASE}#{slug(alert)}"
        if url != expected:
            problems.append(f"infra/prometheus/rules.yml: {alert}: runbook_url is {url}, expected {expected}")
        if slug(alert) not in sections:
            problems.append(f"docs/operations.md: no section for the alert {alert}")

    with open(os.path.join(root, "template.yaml"), encoding="utf-8") as f:
        template = f.read()
    alarms = re.findall(r"(?m)^  ([A-Za-z0-9]+):\n    Type: AWS::CloudWatch::Alarm\s*$", template)
    if not alarms:
        problems.append("template.yaml: no CloudWatch alarms found")
    for alarm in alarms:
        if slug(alarm) not in sections:
            problems.append(f"docs/operations.md: no section for the CloudWatch alarm {alarm}")


def self_test():
    """The checker must catch what it claims to: run it on a small made-up repository."""
    import tempfile

    with tempfile.TemporaryDirectory() as root:
        os.makedirs(os.path.join(root, "docs"))
        os.makedirs(os.path.join(root, "infra", "prometheus"))

        def write(rel, text):
            with open(os.path.join(root, rel), "w", encoding="utf-8") as f:
                f.write(text)

        write("README.md", "# T\n\n[ok](docs/operations.md#devlakedown) [gone](docs/nope.md) "
              "[bad anchor](docs/operations.md#nowhere) `[code](x.md)`\n"
              "```\n[fenced](y.md)\n```\n")
        write("docs/operations.md", "# Ops\n\n## `DevLakeDown`\n\n## A run ended \"partial\"\n\n"
              "[self](#a-run-ended-partial) [up](../README.md#t)\n")
        write("infra/prometheus/rules.yml",
              f"      - alert: DevLakeDown\n        annotations:\n          runbook_url: \"{RUNBOOK_BASE}#devlakedown\"\n"
              "      - alert: DevLakeMonitorStale\n        annotations:\n          summary: x\n")
        write("template.yaml", "Resources:\n  DevLakeDownAlarm:\n    Type: AWS::CloudWatch::Alarm\n")
        problems, pending = [], set()
        check_links(root, ["README.md", "docs/operations.md"], problems, pending)
        check_runbooks(root, problems)
        write("src.rs", "// see design.md\n// docs/devlake-api.md is ours\n// per issue 7\n// (\u00a7 4)\n"
              "// the shared devlake-api.md\n")
        check_references(root, ["src.rs", "docs/operations.md"], problems)
    expected = [
        "README.md:3: no such file: docs/nope.md",
        "README.md:3: no heading for #nowhere in docs/operations.md",
        "infra/prometheus/rules.yml: DevLakeMonitorStale has no runbook_url annotation",
        "docs/operations.md: no section for the CloudWatch alarm DevLakeDownAlarm",
        "src.rs:1: points at the external design document: 'design.md'",
        "src.rs:3: points at a tracker issue number: 'issue 7'",
        "src.rs:4: points at a section number of an external document: '\u00a7'",
        "src.rs:5: points at the external API document (name docs/devlake-api.md): 'devlake-api.md'",
    ]
    if problems != expected:
        print("self-test FAILED: expected", expected, "got", problems)
        return 1
    print("self-test ok")
    return 0


# References to documents that are not in the repository. `docs/devlake-api.md` and a relative
# Markdown link to it from inside docs/ are this repository's own page.
FOREIGN = [
    (re.compile(r"design\.md"), "the external design document"),
    (re.compile(r"(?<!docs/)(?<!\]\()devlake-api\.md"), "the external API document (name docs/devlake-api.md)"),
    (re.compile("\u00a7"), "a section number of an external document"),
    (re.compile(r"\bissues? #?[0-9]+\b", re.I), "a tracker issue number"),
]
# Files that may hold the patterns: this checker, and files that are not project text.
NOT_TEXT = {"infra/local/check_docs.py", "Cargo.lock", "LICENSE"}


def tracked_files(root):
    try:
        out = subprocess.run(["git", "ls-files", "-z"], cwd=root, capture_output=True, check=True)
        return [f for f in out.stdout.decode().split("\0") if f]
    except (OSError, subprocess.CalledProcessError):
        files = []
        for d, subdirs, names in os.walk(root):
            subdirs[:] = [s for s in subdirs if s not in (".git", "target", ".aws-sam")]
            files += [os.path.relpath(os.path.join(d, n), root) for n in names]
        return files


def check_references(root, files, problems):
    for rel in sorted(files):
        if rel in NOT_TEXT:
            continue
        try:
            with open(os.path.join(root, rel), encoding="utf-8") as f:
                lines = f.read().split("\n")
        except (UnicodeDecodeError, FileNotFoundError, IsADirectoryError):
            continue
        for number, line in enumerate(lines, 1):
            for pattern, what in FOREIGN:
                m = pattern.search(line)
                if m:
                    problems.append(f"{rel}:{number}: points at {what}: {m.group(0)!r}")


def main():
    if sys.argv[1:] == ["--self-test"]:
        return self_test()
    root = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", ".."))
    files = ["README.md"] + sorted(
        os.path.join("docs", name) for name in os.listdir(os.path.join(root, "docs")) if name.endswith(".md")
    )
    problems = []
    pending = set()
    check_links(root, files, problems, pending)
    check_runbooks(root, problems)
    check_references(root, tracked_files(root), problems)
    for page in sorted(pending):
        print(f"note: {page} is linked but not here yet (expected from another branch)")
    for p in problems:
        print(p)
    if problems:
        print(f"FAILED: {len(problems)} documentation problem(s)", file=sys.stderr)
        return 1
    print(f"documentation ok: {len(files)} pages, links, anchors, runbook URLs, alarm sections, "
          "no references outside the repository")
    return 0


if __name__ == "__main__":
    sys.exit(main())
