#!/usr/bin/env python3
# Usage: python3 .ci/module-cycles.py host/src lib.rs   (and: host/src main.rs)
"""Module dependency cycles of a Rust crate: every `use`/path reference to crate::a::b
or super::x is an edge from the file's module to the module that defines the item
(the longest module prefix of the path). Parent→child `mod` declarations are ownership,
not use. Reports every strongly connected component with more than one module."""
import os, re, sys
root = sys.argv[1]          # e.g. host/src
entry = sys.argv[2]         # lib.rs or main.rs
prefix = sys.argv[3] if len(sys.argv) > 3 else 'crate'
mods = {}                   # module path tuple -> file
def walk(path, modpath):
    mods[modpath] = path
    src = open(path).read()
    src_nc = re.sub(r'//.*', '', src)
    base = os.path.dirname(path) if os.path.basename(path) in ('mod.rs', 'lib.rs', 'main.rs') else os.path.splitext(path)[0]
    for m in re.finditer(r'^\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+(\w+)\s*;', src_nc, re.M):
        name = m.group(1)
        for cand in (os.path.join(base, name + '.rs'), os.path.join(base, name, 'mod.rs')):
            if os.path.exists(cand):
                walk(cand, modpath + (name,)); break
walk(os.path.join(root, entry), ())
modset = set(mods)
def resolve(cur, segs):
    if segs[0] == 'crate': p = ()
    elif segs[0] == 'self': p = cur
    elif segs[0] == 'super':
        p = cur
        while segs and segs[0] == 'super': p = p[:-1]; segs = segs[1:]
        segs = ['x'] + list(segs)
    else: return None
    segs = segs[1:]
    best = p
    for s in segs:
        if p + (s,) in modset: p = p + (s,); best = p
        else: break
    return best
edges = {m: set() for m in mods}
for m, f in mods.items():
    src = re.sub(r'//.*', '', open(f).read())
    # strip test modules
    src = re.split(r'#\[cfg\((?:all\(\s*)?test\b', src)[0]
    paths = re.findall(r'\b((?:crate|super|self)(?:::\w+)+)', src)
    for u in re.finditer(r'\buse\s+((?:crate|super|self)::[^;]+);', src):
        body = u.group(1)
        if '{' in body:
            head, rest = body.split('{', 1)
            for part in re.findall(r'\w+(?:::\w+)*', rest):
                paths.append(head + part)
    for pth in paths:
        segs = pth.split('::')
        t = resolve(m, segs)
        if t is not None and t != m and not (len(t) > len(m) and t[:len(m)] == m and False):
            edges[m].add(t)
# Tarjan
idx = {}; low = {}; st = []; on = set(); comps = []; c = [0]
sys.setrecursionlimit(10000)
def sc(v):
    idx[v] = low[v] = c[0]; c[0] += 1; st.append(v); on.add(v)
    for w in edges[v]:
        if w not in idx: sc(w); low[v] = min(low[v], low[w])
        elif w in on: low[v] = min(low[v], idx[w])
    if low[v] == idx[v]:
        comp = []
        while True:
            w = st.pop(); on.discard(w); comp.append(w)
            if w == v: break
        comps.append(comp)
for v in mods:
    if v not in idx: sc(v)
bad = [c for c in comps if len(c) > 1]
name = lambda t: '::'.join((prefix,) + t)
print(f"{len(mods)} modules, {sum(len(e) for e in edges.values())} use edges")
for comp in bad:
    print("CYCLE:", ', '.join(sorted(name(t) for t in comp)))
    for a in comp:
        for b in edges[a]:
            if b in comp: print("   ", name(a), "->", name(b))
# also folder-level (top-level module) cycles
top = {}
for a, bs in edges.items():
    for b in bs:
        if a[:1] != b[:1] and a and b: top.setdefault(a[0], set()).add(b[0])
print("stage-level edges:")
for k in sorted(top): print("  ", k, "->", ', '.join(sorted(top[k])))
sys.exit(1 if bad else 0)
