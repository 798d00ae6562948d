#!/usr/bin/env node
// Reference UnixFS importer for the tests: prints the root CID that ipfs-unixfs-importer
// computes for a file or directory tree, with the given options.
//
//   node importer.mjs PATH '{"profile":"unixfs-v0-2015"}'
//   node importer.mjs PATH '{"blocksDir":"/tmp/out","shardSplitThresholdBytes":100}'
//   node importer.mjs PATH '{"cidVersion":1,"rawLeaves":true,"chunkSize":1024,"maxChildrenPerNode":11}'
//   node importer.mjs PATH '{"trickle":true,"leafType":"raw","reduceSingleLeafToSelf":false}'
//   node importer.mjs PATH '{"rabin":{"minChunkSize":87381,"avgChunkSize":262144,"maxChunkSize":393216}}'
//
// Tree options of this script: skipHidden (leave out dot-files inside folders, as Kubo without
// --hidden), preserveMode / preserveMtime (from lstat, as Kubo's --preserve-*: symlinks get the
// mtime only). Symlinks are imported as symlinks.
//
// stdout: one JSON line per imported entry {"path","cid","size"}; the root is last.
import { createReadStream, lstatSync, readdirSync, readlinkSync, writeFileSync } from 'node:fs'
import { basename, join } from 'node:path'
import { importer } from 'ipfs-unixfs-importer'
import { fixedSize, rabin } from 'ipfs-unixfs-importer/chunker'
import { balanced, trickle } from 'ipfs-unixfs-importer/layout'

const [path, json] = process.argv.slice(2)
const opts = JSON.parse(json ?? '{}')

// Blocks are hashed and dropped, or written to opts.blocksDir as files named by CID.
const blocksDir = opts.blocksDir
delete opts.blocksDir
const blockstore = {
  put: async (cid, bytes) => {
    if (blocksDir != null) writeFileSync(join(blocksDir, cid.toString()), bytes)
    return cid
  },
  has: async () => false
}

const { skipHidden, preserveMode, preserveMtime } = opts
delete opts.skipHidden
delete opts.preserveMode
delete opts.preserveMtime

function meta (st, symlink) {
  const out = {}
  if (preserveMode && !symlink) out.mode = Number(st.mode & 0o7777n)
  if (preserveMtime) {
    // As boxo: the nanoseconds only when not 0 (ipfs-unixfs would write a 0 field)
    const nsecs = Number(st.mtimeNs % 1000000000n)
    out.mtime = { secs: st.mtimeNs / 1000000000n, ...(nsecs > 0 ? { nsecs } : {}) }
  }
  return out
}

function * candidates (p, rel) {
  const st = lstatSync(p, { bigint: true })
  if (st.isSymbolicLink()) {
    yield { path: rel, link: readlinkSync(p), ...meta(st, true) }
  } else if (st.isDirectory()) {
    const names = readdirSync(p).filter(n => !(skipHidden && n.startsWith('.'))).sort()
    if (names.length === 0 || preserveMode || preserveMtime) yield { path: rel, ...meta(st) }
    for (const name of names) yield * candidates(join(p, name), `${rel}/${name}`)
  } else {
    yield { path: rel, content: createReadStream(p, { highWaterMark: 1 << 20 }), ...meta(st) }
  }
}

const options = { ...opts }
if (opts.chunkSize != null) options.chunker = fixedSize({ chunkSize: opts.chunkSize })
if (opts.rabin != null) options.chunker = rabin(opts.rabin)
const layout = opts.trickle ? trickle : balanced
if (opts.maxChildrenPerNode != null || opts.trickle) options.layout = layout({ maxChildrenPerNode: opts.maxChildrenPerNode ?? 174 })
delete options.chunkSize
delete options.maxChildrenPerNode
delete options.rabin
delete options.trickle

const started = process.hrtime.bigint()
let bytes = 0
for await (const entry of importer(candidates(path, basename(path)), blockstore, options)) {
  process.stdout.write(JSON.stringify({ path: entry.path, cid: entry.cid.toString(), size: Number(entry.size) }) + '\n')
}
const ms = Number(process.hrtime.bigint() - started) / 1e6
process.stderr.write(JSON.stringify({ ms }) + '\n')
