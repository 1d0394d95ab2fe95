#!/usr/bin/python3
"""Writes the manual pages from the Markdown documents they describe.

    docs/man/mkman.py OUTDIR

autotls(1) is docs/cli.md, autotls-nginx(5) is docs/nginx.md and
autotls-apache(5) is docs/apache.md (without their "Build" sections): the
man pages are those documents, so they cannot disagree with them, and
tests/integration/test_man_pages.py checks that every directive of the
modules' command tables is in the documents, README and pages alike.

Only the Markdown the documents use is understood: headings, paragraphs,
lists, fenced code, tables, `code`, **bold**, *emphasis* and [links](url).
"""
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))

# (page, section, source, one-line description, headings left out)
PAGES = [
    ("autotls", "1", "docs/cli.md",
     "obtain, list, renew and revoke TLS certificates over ACME", ()),
    ("autotls-nginx", "5", "docs/nginx.md",
     "the autotls nginx module: automatic TLS certificates over ACME",
     ("Build",)),
    ("autotls-apache", "5", "docs/apache.md",
     "mod_autotls for Apache httpd: automatic TLS certificates over ACME",
     ("Build",)),
]

SEE_ALSO = {
    "autotls": r"\fBautotls-nginx\fR(5), \fBautotls-apache\fR(5)",
    "autotls-nginx": r"\fBautotls\fR(1), \fBautotls-apache\fR(5), \fBnginx\fR(8)",
    "autotls-apache": r"\fBautotls\fR(1), \fBautotls-nginx\fR(5), \fBa2enmod\fR(8), \fBapache2\fR(8)",
}


def version():
    with open(os.path.join(ROOT, "common", "atls.h")) as f:
        m = re.search(r'#define ATLS_VERSION\s+"([^"]+)"', f.read())
    if not m:
        sys.exit("mkman: ATLS_VERSION not found in common/atls.h")
    return m.group(1)


def escape(text):
    """Plain text for troff: backslashes, hyphens (a hyphen is \\-, so that
    options and paths can be copied from the page), leading dots/quotes."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    return text


def line_start(text):
    return "\\&" + text if text[:1] in (".", "'") else text


def inline(text):
    """Markdown inline markup to troff fonts."""
    out = []
    pos = 0
    pattern = re.compile(r"`([^`]*)`|\*\*([^*]+)\*\*|\*([^*\s][^*]*)\*"
                         r"|\[([^\]]+)\]\(([^)]+)\)")
    for m in pattern.finditer(text):
        out.append(escape(text[pos:m.start()]))
        code, bold, emph, label, _url = m.groups()
        if code is not None:
            out.append("\\fB" + escape(code) + "\\fR")
        elif bold is not None:
            out.append("\\fB" + escape(bold) + "\\fR")
        elif emph is not None:
            out.append("\\fI" + escape(emph) + "\\fR")
        else:
            out.append(escape(label))
        pos = m.end()
    out.append(escape(text[pos:]))
    return line_start("".join(out).replace("\\|", "|"))


def table_cells(row):
    # a "\|" inside a cell is a literal bar, not a column separator
    cells = re.split(r"(?<!\\)\|", row.strip().strip("|"))
    return [c.strip().replace("\\|", "|") for c in cells]


def render_table(rows):
    """A table becomes one tagged paragraph per row: the first column is the
    tag, the others 'Header: value' lines, the last one the text."""
    header = table_cells(rows[0])
    out = []
    for row in rows[2:]:
        cells = table_cells(row)
        out.append(".TP")
        out.append(inline(cells[0]))
        extra = cells[1:]
        for name, value in zip(header[1:-1], extra[:-1]):
            out.append(inline(f"{name.capitalize()}: {value}."))
            out.append(".br")
        if extra:
            out.append(inline(extra[-1]))
    return out


def render(markdown, skip):
    lines = markdown.splitlines()
    out = []
    i = 0
    skipping = False
    para = []

    def flush():
        if para:
            out.append(".PP")
            out.extend(inline(p) for p in para)
            para.clear()

    while i < len(lines):
        line = lines[i]
        heading = re.match(r"^(#+)\s+(.*)$", line)
        if heading and not line.startswith("#!"):
            flush()
            level, title = len(heading.group(1)), heading.group(2)
            if level == 1:          # the document title is the NAME line
                i += 1
                continue
            if level == 2:
                skipping = title in skip
            if not skipping:
                macro = ".SH" if level == 2 else ".SS"
                out.append(f'{macro} "{inline(title).upper() if level == 2 else inline(title)}"')
            i += 1
            continue
        if skipping:
            i += 1
            continue
        if line.startswith("```"):
            flush()
            block = []
            i += 1
            while i < len(lines) and not lines[i].startswith("```"):
                block.append(lines[i])
                i += 1
            out.append(".PP")
            out.append(".RS 4")
            out.append(".nf")
            out.extend(line_start(escape(b)) for b in block)
            out.append(".fi")
            out.append(".RE")
            i += 1
            continue
        if line.startswith("|"):
            flush()
            rows = []
            while i < len(lines) and lines[i].startswith("|"):
                rows.append(lines[i])
                i += 1
            out.extend(render_table(rows))
            continue
        item = re.match(r"^(\s*)([-*]|\d+\.)\s+(.*)$", line)
        if item:
            flush()
            out.append(".IP \\(bu 2")
            out.append(inline(item.group(3)))
            i += 1
            while i < len(lines) and lines[i].startswith("  ") and lines[i].strip():
                out.append(inline(lines[i].strip()))
                i += 1
            continue
        if not line.strip():
            flush()
            i += 1
            continue
        para.append(line.strip())
        i += 1
    flush()
    return out


def page(name, section, source, description, skip, ver):
    with open(os.path.join(ROOT, source)) as f:
        body = render(f.read(), skip)
    head = [
        f'.\\" Generated by docs/man/mkman.py from {source}; edit that file.',
        f'.TH {name.upper()} {section} "" "autotls {ver}" "autotls"',
        ".SH NAME",
        f"{escape(name)} \\- {escape(description)}",
    ]
    if body and not body[0].startswith(".SH"):
        head.append(".SH DESCRIPTION")  # the text before the first section
    tail = [".SH \"SEE ALSO\"", SEE_ALSO[name]]
    return "\n".join(head + body + tail) + "\n"


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: mkman.py OUTDIR")
    outdir = sys.argv[1]
    os.makedirs(outdir, exist_ok=True)
    ver = version()
    for name, section, source, description, skip in PAGES:
        path = os.path.join(outdir, f"{name}.{section}")
        with open(path + ".tmp", "w") as f:
            f.write(page(name, section, source, description, skip, ver))
        os.replace(path + ".tmp", path)


if __name__ == "__main__":
    main()
