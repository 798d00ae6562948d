#!/usr/bin/env node
// Reference UnixFS importer for the tests: prints the root CID that ipfs-unixfs-importer
// computes for a file or directory tree, with the given options.
//
//   node importer.mjs PATH '{"profile":"unixfs-v0-2015"}'
//   node importer.mjs PATH '{"blocksDir":"/tmp/out","shardSplitThresholdBytes":100}'
//   node importer.mjs PATH '{"cidVersion":1,"rawLeaves":true,"chunkSize":1024,"maxChildrenPerNode":11}'
//
// stdout: one JSON line per imported entry {"path","cid","size"}; the root is last.
import { createReadStream, readdirSync, statSync, writeFileSync } from 'node:fs'
import { basename, join } from 'node:path'
import { importer } from 'ipfs-unixfs-importer'
import { fixedSize } from 'ipfs-unixfs-importer/chunker'
import { balanced } from 'ipfs-unixfs-importer/layout'

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

function * candidates (p, rel) {
  const st = statSync(p)
  if (st.isDirectory()) {
    const names = readdirSync(p).sort()
    if (names.length === 0) yield { path: rel }
    for (const name of names) yield * candidates(join(p, name), `${rel}/${name}`)
  } else {
    yield { path: rel, content: createReadStream(p, { highWaterMark: 1 << 20 }) }
  }
}

const options = { ...opts }
if (opts.chunkSize != null) options.chunker = fixedSize({ chunkSize: opts.chunkSize })
if (opts.maxChildrenPerNode != null) options.layout = balanced({ maxChildrenPerNode: opts.maxChildrenPerNode })
delete options.chunkSize
delete options.maxChildrenPerNode

const started = process.hrtime.bigint()
let bytes = 0
for await (const entry of importer(candidates(path, basename(path)), blockstore, options)) {
  process.stdout.write(JSON.stringify({ path: entry.path, cid: entry.cid.toString(), size: Number(entry.size) }) + '\n')
}
const ms = Number(process.hrtime.bigint() - started) / 1e6
process.stderr.write(JSON.stringify({ ms }) + '\n')
