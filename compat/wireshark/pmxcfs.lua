-- Wireshark dissectors for a Proxmox VE cluster's corosync 3 traffic and
-- pmxcfs's messages.
--
-- What they read:
--   * the output of `pmxcfs-replay wire --authkey K --decrypted-out OUT.pcapng
--     CAPTURE`: knet undone (decrypted, defragmented, decompressed), each UDP
--     payload on the knet ports (5405-5412) is one totem message;
--   * pmxcfs CPG event recordings (captures/FORMAT.md: pcap link type 147,
--     LINKTYPE_USER0), as pmxcfs-replay and `pmxcfs --record` write them.
--
-- Layers: totem (totemsrp: mcast, token, join, commit token, ...), totempg
-- (packing and fragmentation inside mcasts, the "a" and "sync" groups),
-- cpg (procjoin/procleave, joinlist, mcast, downlist, partial mcast) and
-- pmxcfs (the dfsm header, dcdb and kvstore payloads: fuse messages, unlock
-- messages, the memdb index, tree entries, kvstore updates, cluster-log
-- entries and ring buffers). Byte layouts: the project's knet-wire and
-- pmxcfs-protocol references; field names follow `pmxcfs-replay decode
-- --json`.
--
-- Filters: pmxcfs.dcdb.path contains "qemu-server", pmxcfs.type == STATE,
-- pmxcfs.kind == "NORMAL/WRITE", pmxcfs.epoch, cpg.group == "pve_dcdb_v1",
-- totem.ring == "1.d", !totem.copy_of (one copy of each multicast).
--
-- Install: copy this file into ~/.local/lib/wireshark/plugins/ (or the
-- system plugin folder, where the Debian package pmxcfs-rs-tools puts it),
-- or run `tshark -X lua_script:pmxcfs.lua`.

local totem_proto = Proto("totem", "Corosync 3 totem (knet payload, decrypted)")
local totempg_proto = Proto("totempg", "Corosync totempg")
local cpg_proto = Proto("cpg", "Corosync closed process group")
local pmxcfs_proto = Proto("pmxcfs", "Proxmox cluster file system (pmxcfs)")
local capture_proto = Proto("pmxcfs_capture", "pmxcfs CPG event record")

------------------------------------------------------------------------
-- Fields
------------------------------------------------------------------------

local TOTEM_TYPES = {
    [0] = "orf_token", [1] = "mcast", [2] = "memb_merge_detect",
    [3] = "memb_join", [4] = "memb_commit_token", [5] = "token_hold_cancel",
}

local tf = {
    magic = ProtoField.uint16("totem.magic", "Magic", base.HEX),
    big_endian = ProtoField.bool("totem.big_endian", "Big-endian sender"),
    version = ProtoField.uint8("totem.version", "Version"),
    type = ProtoField.uint8("totem.type", "Type", base.DEC, TOTEM_TYPES),
    encapsulated = ProtoField.uint8("totem.encapsulated", "Encapsulated", base.DEC,
        { [0] = "no", [1] = "recovery copy", [2] = "normal" }),
    nodeid = ProtoField.uint32("totem.nodeid", "Originating node"),
    target = ProtoField.uint32("totem.target", "Target node"),
    system_from = ProtoField.uint32("totem.system_from", "System from"),
    seq = ProtoField.uint32("totem.seq", "Seq"),
    this_seqno = ProtoField.uint32("totem.this_seqno", "Sender's message number"),
    ring = ProtoField.string("totem.ring", "Ring"),
    ring_rep = ProtoField.uint32("totem.ring.rep", "Ring representative"),
    ring_seq = ProtoField.uint64("totem.ring.seq", "Ring seq"),
    node_id = ProtoField.uint32("totem.node_id", "Node id (unused)"),
    guarantee = ProtoField.uint32("totem.guarantee", "Guarantee"),
    token_seq = ProtoField.uint32("totem.token_seq", "Token seq"),
    aru = ProtoField.uint32("totem.aru", "All received up to"),
    aru_addr = ProtoField.uint32("totem.aru_addr", "aru lowered by"),
    backlog = ProtoField.uint32("totem.backlog", "Backlog"),
    fcc = ProtoField.uint32("totem.fcc", "Flow control count"),
    retrans_flg = ProtoField.uint32("totem.retrans_flg", "Retransmit flag"),
    rtr_entries = ProtoField.uint32("totem.rtr_entries", "Retransmit requests"),
    rtr_seq = ProtoField.uint32("totem.rtr.seq", "Retransmit request seq"),
    proc_entries = ProtoField.uint32("totem.join.proc_entries", "Processor list entries"),
    failed_entries = ProtoField.uint32("totem.join.failed_entries", "Failed list entries"),
    join_ring_seq = ProtoField.uint64("totem.join.ring_seq", "Sender's ring seq"),
    proc = ProtoField.uint32("totem.join.proc", "Processor"),
    failed = ProtoField.uint32("totem.join.failed", "Failed"),
    memb_index = ProtoField.uint32("totem.commit.memb_index", "Next entry"),
    addr_entries = ProtoField.uint32("totem.commit.addr_entries", "Members"),
    member = ProtoField.uint32("totem.commit.member", "Member"),
    old_ring = ProtoField.string("totem.commit.old_ring", "Old ring"),
    old_aru = ProtoField.uint32("totem.commit.old_aru", "aru in the old ring"),
    high_delivered = ProtoField.uint32("totem.commit.high_delivered", "High delivered"),
    received_flg = ProtoField.uint32("totem.commit.received_flg", "Received flag"),
    copy_of = ProtoField.framenum("totem.copy_of", "Copy of the multicast in frame", base.NONE),
}
totem_proto.fields = tf

local pgf = {
    version = ProtoField.uint16("totempg.version", "Version"),
    type = ProtoField.uint16("totempg.type", "Type"),
    fragmented = ProtoField.uint8("totempg.fragmented", "Fragmented (id of the continued message)"),
    continuation = ProtoField.uint8("totempg.continuation", "Continuation (of fragment id)"),
    msg_count = ProtoField.uint16("totempg.msg_count", "Packed messages"),
    length = ProtoField.uint16("totempg.length", "Message length"),
    piece = ProtoField.bytes("totempg.piece", "Message piece"),
    reassembled = ProtoField.bool("totempg.reassembled", "Reassembled from fragments"),
    groups = ProtoField.uint16("totempg.groups", "Groups"),
    group = ProtoField.string("totempg.group", "Group"),
    service = ProtoField.uint16("totempg.service", "Service", base.DEC, {
        [0] = "cmap", [1] = "cfg", [2] = "cpg", [3] = "quorum", [4] = "pload",
        [5] = "votequorum", [6] = "mon", [7] = "wd" }),
    fn = ProtoField.uint16("totempg.fn", "Function"),
    size = ProtoField.uint32("totempg.size", "Size"),
    sync_type = ProtoField.uint32("totempg.sync.type", "Sync message", base.DEC,
        { [0] = "barrier", [1] = "service_build" }),
    sync_ring = ProtoField.string("totempg.sync.ring", "Ring"),
    sync_count = ProtoField.uint32("totempg.sync.count", "Services"),
    sync_service = ProtoField.int32("totempg.sync.service", "Service"),
}
totempg_proto.fields = pgf

local CPG_FNS = {
    [0] = "procjoin", [1] = "procleave", [2] = "joinlist", [3] = "mcast",
    [4] = "downlist_old", [5] = "downlist", [6] = "partial_mcast",
}
local CPG_REASONS = {
    [1] = "join", [2] = "leave", [3] = "nodedown", [4] = "nodeup", [5] = "procdown",
}
local cf = {
    fn = ProtoField.uint16("cpg.fn", "Function", base.DEC, CPG_FNS),
    group = ProtoField.string("cpg.group", "Group"),
    group_len = ProtoField.uint32("cpg.group_len", "Group name length"),
    pid = ProtoField.uint32("cpg.pid", "Process id"),
    reason = ProtoField.uint32("cpg.reason", "Reason", base.DEC, CPG_REASONS),
    msglen = ProtoField.uint32("cpg.msglen", "Message length"),
    nodeid = ProtoField.uint32("cpg.nodeid", "Source node"),
    fraglen = ProtoField.uint32("cpg.fraglen", "Fragment length"),
    partial_type = ProtoField.uint32("cpg.partial_type", "Fragment", base.DEC,
        { [1] = "first", [2] = "continued", [3] = "last" }),
    old_members = ProtoField.uint32("cpg.downlist.old_members", "Old members"),
    left_nodes = ProtoField.uint32("cpg.downlist.left_nodes", "Left nodes"),
    left_node = ProtoField.uint32("cpg.downlist.node", "Left node"),
    joinlist_entries = ProtoField.uint32("cpg.joinlist.entries", "Processes"),
    payload = ProtoField.bytes("cpg.payload", "Payload"),
}
cpg_proto.fields = cf

local DFSM_TYPES = {
    [0] = "NORMAL", [1] = "SYNC_START", [2] = "STATE", [3] = "UPDATE",
    [4] = "UPDATE_COMPLETE", [5] = "VERIFY_REQUEST", [6] = "VERIFY",
}
local DCDB_SUBTYPES = {
    [1] = "WRITE", [2] = "MKDIR", [3] = "DELETE", [4] = "RENAME", [5] = "CREATE",
    [6] = "MTIME", [7] = "UNLOCK_REQUEST", [8] = "UNLOCK",
}
local KV_SUBTYPES = { [1] = "UPDATE", [2] = "UPDATE_COMPLETE", [3] = "LOG" }

local pf = {
    group = ProtoField.string("pmxcfs.group", "Group"),
    sender = ProtoField.uint32("pmxcfs.sender_nodeid", "Sender node"),
    sender_pid = ProtoField.uint32("pmxcfs.sender_pid", "Sender pid"),
    kind = ProtoField.string("pmxcfs.kind", "Kind"),
    type = ProtoField.uint16("pmxcfs.type", "Type", base.DEC, DFSM_TYPES),
    subtype = ProtoField.uint16("pmxcfs.subtype", "Subtype"),
    protocol_version = ProtoField.uint32("pmxcfs.protocol_version", "Protocol version"),
    time = ProtoField.uint32("pmxcfs.time", "Time (sender's clock)"),
    reserved = ProtoField.uint32("pmxcfs.reserved", "Reserved"),
    count = ProtoField.uint64("pmxcfs.count", "Count"),
    epoch = ProtoField.string("pmxcfs.epoch", "Epoch"),
    epoch_epoch = ProtoField.uint32("pmxcfs.epoch.epoch", "Epoch counter"),
    epoch_time = ProtoField.uint32("pmxcfs.epoch.time", "Epoch time"),
    epoch_nodeid = ProtoField.uint32("pmxcfs.epoch.nodeid", "Epoch node"),
    epoch_pid = ProtoField.uint32("pmxcfs.epoch.pid", "Epoch pid"),
    payload_len = ProtoField.uint32("pmxcfs.payload_len", "Payload length"),
    -- dcdb fuse message and unlock message
    size = ProtoField.uint32("pmxcfs.dcdb.size", "Size"),
    offset = ProtoField.uint32("pmxcfs.dcdb.offset", "Offset"),
    pathlen = ProtoField.uint32("pmxcfs.dcdb.pathlen", "Path length"),
    tolen = ProtoField.uint32("pmxcfs.dcdb.tolen", "To length"),
    flags = ProtoField.uint32("pmxcfs.dcdb.flags", "Flags"),
    path = ProtoField.string("pmxcfs.dcdb.path", "Path"),
    to = ProtoField.string("pmxcfs.dcdb.to", "To"),
    data = ProtoField.bytes("pmxcfs.dcdb.data", "Data"),
    csum = ProtoField.bytes("pmxcfs.dcdb.csum", "Entry checksum"),
    -- memdb index
    ix_version = ProtoField.uint64("pmxcfs.dcdb.index.version", "Version"),
    ix_last_inode = ProtoField.uint64("pmxcfs.dcdb.index.last_inode", "Last inode"),
    ix_writer = ProtoField.uint32("pmxcfs.dcdb.index.writer", "Writer"),
    ix_mtime = ProtoField.uint32("pmxcfs.dcdb.index.mtime", "Mtime"),
    ix_size = ProtoField.uint32("pmxcfs.dcdb.index.size", "Entries (as sent)"),
    ix_bytes = ProtoField.uint32("pmxcfs.dcdb.index.bytes", "Length (as sent)"),
    ix_entries = ProtoField.uint32("pmxcfs.dcdb.index.entries", "Entries"),
    ix_inode = ProtoField.uint64("pmxcfs.dcdb.index.inode", "Inode"),
    ix_digest = ProtoField.bytes("pmxcfs.dcdb.index.digest", "Digest"),
    ix_remainder = ProtoField.uint32("pmxcfs.dcdb.index.remainder", "Bytes after the entries"),
    -- tree entry (UPDATE)
    e_parent = ProtoField.uint64("pmxcfs.dcdb.entry.parent", "Parent"),
    e_inode = ProtoField.uint64("pmxcfs.dcdb.entry.inode", "Inode"),
    e_version = ProtoField.uint64("pmxcfs.dcdb.entry.version", "Version"),
    e_writer = ProtoField.uint32("pmxcfs.dcdb.entry.writer", "Writer"),
    e_mtime = ProtoField.uint32("pmxcfs.dcdb.entry.mtime", "Mtime"),
    e_size = ProtoField.uint32("pmxcfs.dcdb.entry.size", "Size"),
    e_namelen = ProtoField.uint32("pmxcfs.dcdb.entry.namelen", "Name length"),
    e_type = ProtoField.uint8("pmxcfs.dcdb.entry.type", "Type", base.DEC, { [4] = "dir", [8] = "reg" }),
    e_name = ProtoField.string("pmxcfs.dcdb.entry.name", "Name"),
    e_data = ProtoField.bytes("pmxcfs.dcdb.entry.data", "Data"),
    -- verify
    verify_id = ProtoField.uint64("pmxcfs.verify.id", "Request id"),
    verify_csum = ProtoField.bytes("pmxcfs.verify.csum", "Checksum"),
    -- kvstore
    kv_key = ProtoField.string("pmxcfs.kvstore.key", "Key"),
    kv_key_field = ProtoField.bytes("pmxcfs.kvstore.key_field", "Key field"),
    kv_value = ProtoField.string("pmxcfs.kvstore.value", "Value"),
    kv_value_bytes = ProtoField.bytes("pmxcfs.kvstore.value_bytes", "Value bytes"),
    kv_value_len = ProtoField.uint32("pmxcfs.kvstore.value_len", "Value length"),
    -- cluster log
    clog_size = ProtoField.uint32("pmxcfs.clog.size", "Buffer size"),
    clog_cpos = ProtoField.uint32("pmxcfs.clog.cpos", "Newest entry at"),
    clog_entries = ProtoField.uint32("pmxcfs.clog.entries", "Entries"),
    clog_entry = ProtoField.none("pmxcfs.clog.entry", "Cluster log entry"),
    clog_prev = ProtoField.uint32("pmxcfs.clog.prev", "Previous entry at"),
    clog_next = ProtoField.uint32("pmxcfs.clog.next", "Next free at"),
    clog_uid = ProtoField.uint32("pmxcfs.clog.uid", "Uid"),
    clog_time = ProtoField.uint32("pmxcfs.clog.time", "Time"),
    clog_node_digest = ProtoField.uint64("pmxcfs.clog.node_digest", "Node digest", base.HEX),
    clog_ident_digest = ProtoField.uint64("pmxcfs.clog.ident_digest", "Ident digest", base.HEX),
    clog_pid = ProtoField.uint32("pmxcfs.clog.pid", "Pid"),
    clog_priority = ProtoField.uint8("pmxcfs.clog.priority", "Priority", base.DEC, {
        [0] = "emerg", [1] = "alert", [2] = "crit", [3] = "err", [4] = "warning",
        [5] = "notice", [6] = "info", [7] = "debug" }),
    clog_node = ProtoField.string("pmxcfs.clog.node", "Node"),
    clog_ident = ProtoField.string("pmxcfs.clog.ident", "Ident"),
    clog_tag = ProtoField.string("pmxcfs.clog.tag", "Tag"),
    clog_msg = ProtoField.string("pmxcfs.clog.msg", "Message"),
}
pmxcfs_proto.fields = pf

local CAPTURE_KINDS = { [1] = "DELIVER", [2] = "CONFCHG", [3] = "MCAST", [4] = "QUORUM" }
local capf = {
    version = ProtoField.uint8("pmxcfs_capture.version", "Version"),
    kind = ProtoField.uint8("pmxcfs_capture.kind", "Kind", base.DEC, CAPTURE_KINDS),
    group_len = ProtoField.uint16("pmxcfs_capture.group_len", "Group name length"),
    local_nodeid = ProtoField.uint32("pmxcfs_capture.local_nodeid", "Local node"),
    local_pid = ProtoField.uint32("pmxcfs_capture.local_pid", "Local pid"),
    group = ProtoField.string("pmxcfs_capture.group", "Group"),
    sender_nodeid = ProtoField.uint32("pmxcfs_capture.sender_nodeid", "Sender node"),
    sender_pid = ProtoField.uint32("pmxcfs_capture.sender_pid", "Sender pid"),
    msg_len = ProtoField.uint32("pmxcfs_capture.msg_len", "Message length"),
    guarantee = ProtoField.uint32("pmxcfs_capture.guarantee", "Guarantee"),
    result = ProtoField.int32("pmxcfs_capture.result", "Result", base.DEC,
        { [1] = "CS_OK", [6] = "CS_ERR_TRY_AGAIN" }),
    n_members = ProtoField.uint32("pmxcfs_capture.members", "Members"),
    n_left = ProtoField.uint32("pmxcfs_capture.left", "Left"),
    n_joined = ProtoField.uint32("pmxcfs_capture.joined", "Joined"),
    addr_nodeid = ProtoField.uint32("pmxcfs_capture.nodeid", "Node"),
    addr_pid = ProtoField.uint32("pmxcfs_capture.pid", "Pid"),
    addr_reason = ProtoField.uint32("pmxcfs_capture.reason", "Reason", base.DEC, CPG_REASONS),
    quorate = ProtoField.uint32("pmxcfs_capture.quorate", "Quorate"),
    ring_seq = ProtoField.uint64("pmxcfs_capture.ring_seq", "Ring seq"),
    n_nodes = ProtoField.uint32("pmxcfs_capture.n_nodes", "Nodes"),
    node = ProtoField.uint32("pmxcfs_capture.node", "Node"),
    data = ProtoField.bytes("pmxcfs_capture.data", "Data"),
}
capture_proto.fields = capf

local ex_malformed = ProtoExpert.new("pmxcfs.malformed", "Malformed", expert.group.MALFORMED, expert.severity.ERROR)
local ex_cut = ProtoExpert.new("pmxcfs.cut", "Cut", expert.group.UNDECODED, expert.severity.NOTE)
local ex_orphan = ProtoExpert.new("totempg.orphan", "The start of this message is not in the capture",
    expert.group.REASSEMBLE, expert.severity.NOTE)
pmxcfs_proto.experts = { ex_malformed, ex_cut, ex_orphan }

------------------------------------------------------------------------
-- Helpers
------------------------------------------------------------------------

-- Adds a field over tvb[off, off+len) in the sender's byte order.
local function add(tree, field, tvb, off, len, le)
    if le then
        return tree:add_le(field, tvb:range(off, len))
    end
    return tree:add(field, tvb:range(off, len))
end

local function u8(tvb, off) return tvb:range(off, 1):uint() end
local function u16(tvb, off, le)
    local r = tvb:range(off, 2)
    if le then return r:le_uint() end
    return r:uint()
end
local function u32(tvb, off, le)
    local r = tvb:range(off, 4)
    if le then return r:le_uint() end
    return r:uint()
end
local function u64(tvb, off, le)
    local r = tvb:range(off, 8)
    if le then return r:le_uint64() end
    return r:uint64()
end

local function hex64(v)
    local h = v:tohex():gsub("^0+", "")
    if h == "" then h = "0" end
    return h
end

-- A 12-byte ring id: "rep.seq" in hex, as corosync prints it.
local function ring_text(tvb, off, le)
    return string.format("%x", u32(tvb, off, le)) .. "." .. hex64(u64(tvb, off + 4, le))
end

local function add_ring(tree, field, tvb, off, le)
    local text = ring_text(tvb, off, le)
    local item = tree:add(field, tvb:range(off, 12), text)
    add(item, tf.ring_rep, tvb, off, 4, le)
    add(item, tf.ring_seq, tvb, off + 4, 8, le)
    return text
end

-- tvb[off, off+len) as far as it was captured (a record Wireshark had to
-- cut holds less than the message's length says), or nil.
local function clamp(tvb, off, len)
    local n = math.min(len, tvb:len() - off)
    if n <= 0 then return nil end
    return tvb:range(off, n)
end

-- Adds `field` over what was captured of tvb[off, off+len).
local function add_clamped(tree, field, tvb, off, len)
    local r = clamp(tvb, off, len)
    if r then return tree:add(field, r) end
    return nil
end

local function malformed(tree, tvb, text)
    tree:add_proto_expert_info(ex_malformed, text)
end

-- The bytes of tvb[off, off+len) up to the first NUL, as a Lua string.
local function cstring(tvb, off, len)
    if len <= 0 then return "" end
    local s = tvb:range(off, len):raw()
    local nul = s:find("\0", 1, true)
    if nul then s = s:sub(1, nul - 1) end
    return s
end

------------------------------------------------------------------------
-- pmxcfs messages
------------------------------------------------------------------------

local DCDB = "pve_dcdb_v1\0"
local KVSTORE = "pve_kvstore_v1\0"

local function dissect_fuse(t, tvb, off, info, full)
    local len = full - off
    if len < 20 then return malformed(t, tvb, "fuse message shorter than 20 bytes") end
    local size, offset = u32(tvb, off, true), u32(tvb, off + 4, true)
    local pathlen, tolen = u32(tvb, off + 8, true), u32(tvb, off + 12, true)
    t:add_le(pf.size, tvb:range(off, 4))
    t:add_le(pf.offset, tvb:range(off + 4, 4))
    t:add_le(pf.pathlen, tvb:range(off + 8, 4))
    t:add_le(pf.tolen, tvb:range(off + 12, 4))
    t:add_le(pf.flags, tvb:range(off + 16, 4))
    if 20 + size + pathlen + tolen ~= len then
        return malformed(t, tvb, "fuse message: 20 + size + pathlen + tolen is not its length")
    end
    local at = off + 20
    if pathlen > 0 then
        local path = tvb:range(at, pathlen - 1):raw()
        t:add(pf.path, tvb:range(at, pathlen), path)
        info[#info + 1] = "path=" .. path
        at = at + pathlen
    end
    if tolen > 0 then
        local to = tvb:range(at, tolen - 1):raw()
        t:add(pf.to, tvb:range(at, tolen), to)
        info[#info + 1] = "to=" .. to
        at = at + tolen
    end
    if size > 0 then
        add_clamped(t, pf.data, tvb, at, size)
    end
end

local function dissect_unlock(t, tvb, off, info, full)
    local len = full - off
    if len < 33 then return malformed(t, tvb, "unlock message shorter than 33 bytes") end
    t:add(pf.csum, tvb:range(off, 32))
    local path = tvb:range(off + 32, len - 33):raw()
    t:add(pf.path, tvb:range(off + 32, len - 32), path)
    info[#info + 1] = "path=" .. path
end

local function dissect_index(t, tvb, off, info, full)
    local len = full - off
    if len < 32 then return malformed(t, tvb, "memdb index shorter than 32 bytes") end
    t:add_le(pf.ix_version, tvb:range(off, 8))
    t:add_le(pf.ix_last_inode, tvb:range(off + 8, 8))
    t:add_le(pf.ix_writer, tvb:range(off + 16, 4))
    t:add_le(pf.ix_mtime, tvb:range(off + 20, 4))
    t:add_le(pf.ix_size, tvb:range(off + 24, 4))
    t:add_le(pf.ix_bytes, tvb:range(off + 28, 4))
    if u32(tvb, off + 28, true) ~= len then
        return malformed(t, tvb, "memdb index: its length field is not its length")
    end
    local n = math.floor((len - 32) / 40)
    t:add(pf.ix_entries, tvb:range(off + 24, 4), n)
    for i = 0, n - 1 do
        local at = off + 32 + 40 * i
        if at + 40 > tvb:len() then break end
        local e = t:add_le(pf.ix_inode, tvb:range(at, 8))
        e:add(pf.ix_digest, tvb:range(at + 8, 32))
    end
    local rest = (len - 32) % 40
    if rest > 0 then
        local r = clamp(tvb, off + 32 + 40 * n, rest)
        if r then t:add(pf.ix_remainder, r, rest) else t:add(pf.ix_remainder, rest) end
    end
    info[#info + 1] = "version=" .. tostring(u64(tvb, off, true)) .. " entries=" .. n
end

local function dissect_tree_entry(t, tvb, off, info, full)
    local len = full - off
    if len < 41 then return malformed(t, tvb, "tree entry shorter than 41 bytes") end
    t:add_le(pf.e_parent, tvb:range(off, 8))
    t:add_le(pf.e_inode, tvb:range(off + 8, 8))
    t:add_le(pf.e_version, tvb:range(off + 16, 8))
    t:add_le(pf.e_writer, tvb:range(off + 24, 4))
    t:add_le(pf.e_mtime, tvb:range(off + 28, 4))
    t:add_le(pf.e_size, tvb:range(off + 32, 4))
    t:add_le(pf.e_namelen, tvb:range(off + 36, 4))
    t:add(pf.e_type, tvb:range(off + 40, 1))
    local size, namelen, typ = u32(tvb, off + 32, true), u32(tvb, off + 36, true), u8(tvb, off + 40)
    if typ ~= 4 and typ ~= 8 then return malformed(t, tvb, "tree entry type is neither 4 nor 8") end
    if size + namelen ~= len - 41 or namelen == 0 then
        return malformed(t, tvb, "tree entry: size + namelen is not what follows")
    end
    local name = tvb:range(off + 41, namelen - 1):raw()
    t:add(pf.e_name, tvb:range(off + 41, namelen), name)
    if size > 0 then
        add_clamped(t, pf.e_data, tvb, off + 41 + namelen, size)
    end
    info[#info + 1] = "inode=" .. tostring(u64(tvb, off + 8, true)) .. " name=" .. name
end

-- One cluster-log entry at tvb[off, off+len); `stored`: inside a ring
-- buffer (its size is given by its lengths), else a LOG message (exact).
local function dissect_clog_entry(tree, tvb, off, len, info)
    if len < 48 then
        malformed(tree, tvb, "cluster-log entry shorter than 48 bytes")
        return nil
    end
    local node_len, ident_len, tag_len = u8(tvb, off + 37), u8(tvb, off + 38), u8(tvb, off + 39)
    local msg_len = u32(tvb, off + 40, true)
    local size = 48 + node_len + ident_len + tag_len + msg_len
    if size > len then
        malformed(tree, tvb, "cluster-log entry longer than its message")
        return nil
    end
    local e = tree:add(pf.clog_entry, tvb:range(off, size))
    e:add_le(pf.clog_prev, tvb:range(off, 4))
    e:add_le(pf.clog_next, tvb:range(off + 4, 4))
    e:add_le(pf.clog_uid, tvb:range(off + 8, 4))
    e:add_le(pf.clog_time, tvb:range(off + 12, 4))
    e:add_le(pf.clog_node_digest, tvb:range(off + 16, 8))
    e:add_le(pf.clog_ident_digest, tvb:range(off + 24, 8))
    e:add_le(pf.clog_pid, tvb:range(off + 32, 4))
    e:add(pf.clog_priority, tvb:range(off + 36, 1))
    local at = off + 44
    local strings = {}
    for i, spec in ipairs({ { pf.clog_node, node_len }, { pf.clog_ident, ident_len },
        { pf.clog_tag, tag_len }, { pf.clog_msg, msg_len } }) do
        local n = spec[2]
        local s = cstring(tvb, at, n)
        if n > 0 then
            e:add(spec[1], tvb:range(at, n), s)
        else
            e:add(spec[1], tvb:range(at, 0), s)
        end
        strings[i] = s
        at = at + n
    end
    e:set_text(string.format("Cluster log entry: %s %s %s: %s", strings[1], strings[2], strings[3], strings[4]))
    if info then
        info[#info + 1] = string.format("%s %s: %s", strings[1], strings[3], strings[4])
    end
    return u32(tvb, off, true), size
end

-- The cluster-log ring buffer of a kvstore STATE, walked from the newest
-- entry through `prev` as C does.
local function dissect_clog_buffer(t, tvb, off, info, full)
    if full > tvb:len() then
        return malformed(t, tvb, "cluster-log buffer: cut (not all of it was captured)")
    end
    local len = full - off
    if len < 8 then return malformed(t, tvb, "cluster-log buffer shorter than 8 bytes") end
    t:add_le(pf.clog_size, tvb:range(off, 4))
    t:add_le(pf.clog_cpos, tvb:range(off + 4, 4))
    if u32(tvb, off, true) ~= len then
        return malformed(t, tvb, "cluster-log buffer: its size field is not its length")
    end
    local cpos = u32(tvb, off + 4, true)
    local pos = cpos
    local n = 0
    local entries = {}
    while pos ~= 0 do
        if not (pos <= cpos or pos > cpos + 4096) then break end
        if pos < 8 or pos >= len then
            return malformed(t, tvb, "cluster-log buffer: an entry position outside the buffer")
        end
        if n > len / 48 then
            return malformed(t, tvb, "cluster-log buffer: the entries form a cycle")
        end
        local avail = len - pos
        if avail < 48 then
            return malformed(t, tvb, "cluster-log buffer: an entry past the end")
        end
        local node_len, ident_len, tag_len = u8(tvb, off + pos + 37), u8(tvb, off + pos + 38), u8(tvb, off + pos + 39)
        local msg_len = u32(tvb, off + pos + 40, true)
        if 48 + node_len + ident_len + tag_len + msg_len > avail then
            return malformed(t, tvb, "cluster-log buffer: an entry past the end")
        end
        entries[#entries + 1] = pos
        n = n + 1
        local prev = u32(tvb, off + pos, true)
        if pos < prev and prev <= cpos then break end
        pos = prev
    end
    t:add(pf.clog_entries, tvb:range(off + 4, 4), n)
    for _, p in ipairs(entries) do
        dissect_clog_entry(t, tvb, off + p, len - p, nil)
    end
    info[#info + 1] = "entries=" .. n
end

local function dissect_kv_update(t, tvb, off, info, full)
    local len = full - off
    if len < 256 then return malformed(t, tvb, "kvstore update shorter than 256 bytes") end
    local keyfield = tvb:range(off, 256):raw()
    if not keyfield:find("\0", 1, true) then
        return malformed(t, tvb, "kvstore update: no NUL in the key field")
    end
    local key = cstring(tvb, off, 256)
    t:add(pf.kv_key, tvb:range(off, 256), key)
    local value = clamp(tvb, off + 256, len - 256)
    if value then
        t:add(pf.kv_value_len, value, len - 256)
        t:add(pf.kv_value, value, cstring(tvb, off + 256, value:len()))
        t:add(pf.kv_value_bytes, value)
    else
        t:add(pf.kv_value_len, len - 256)
    end
    info[#info + 1] = "key=" .. key
end

-- One dfsm message of group `group` (name bytes with their NUL).
local function group_kind(group)
    if group == DCDB then return "dcdb" elseif group == KVSTORE then return "kvstore" end
    return "dfsm"
end

local function pmxcfs_body(tvb, pinfo, root, group, sender, sender_pid, full)
    local t = root:add(pmxcfs_proto, tvb())
    full = full or tvb:len()
    if full > tvb:len() then
        t:add_proto_expert_info(ex_cut, string.format(
            "Only %d of the message's %d bytes are in the record (Wireshark reads records of up to 256 KiB)",
            tvb:len(), full))
    end
    local which = group_kind(group)
    t:add(pf.group, (group:gsub("%z$", ""))):set_generated()
    if sender then
        t:add(pf.sender, sender):set_generated()
        t:add(pf.sender_pid, sender_pid):set_generated()
    end
    local len = full
    if len < 16 then return malformed(t, tvb, "dfsm message shorter than 16 bytes") end
    local typ, subtype = u16(tvb, 0, true), u16(tvb, 2, true)
    t:add_le(pf.type, tvb:range(0, 2))
    t:add_le(pf.subtype, tvb:range(2, 2))
    t:add_le(pf.protocol_version, tvb:range(4, 4))
    t:add_le(pf.time, tvb:range(8, 4))
    t:add_le(pf.reserved, tvb:range(12, 4))
    local kind
    local off
    if typ == 0 then
        if len < 24 then return malformed(t, tvb, "normal header shorter than 24 bytes") end
        t:add_le(pf.count, tvb:range(16, 8))
        off = 24
        local names = (which == "dcdb" and DCDB_SUBTYPES) or (which == "kvstore" and KV_SUBTYPES) or nil
        if names then
            kind = "NORMAL/" .. (names[subtype] or ("UNKNOWN(" .. subtype .. ")"))
        else
            kind = "NORMAL/" .. subtype
        end
    else
        if len < 32 then return malformed(t, tvb, "state header shorter than 32 bytes") end
        local e = { u32(tvb, 16, true), u32(tvb, 20, true), u32(tvb, 24, true), u32(tvb, 28, true) }
        local ep = t:add(pf.epoch, tvb:range(16, 16), table.concat(e, "/"))
        ep:add_le(pf.epoch_epoch, tvb:range(16, 4))
        ep:add_le(pf.epoch_time, tvb:range(20, 4))
        ep:add_le(pf.epoch_nodeid, tvb:range(24, 4))
        ep:add_le(pf.epoch_pid, tvb:range(28, 4))
        off = 32
        if which == "dfsm" then
            kind = DFSM_TYPES[typ] or "UNKNOWN"
        else
            kind = DFSM_TYPES[typ] or ("UNKNOWN(" .. typ .. ")")
        end
    end
    t:add(pf.kind, tvb:range(0, 4), kind)
    local info = { which .. " " .. kind }
    local rest = len - off
    local function payload_len()
        if rest > 0 then t:add(pf.payload_len, rest) end
    end
    if which == "dcdb" then
        if typ == 0 and subtype >= 1 and subtype <= 6 then
            dissect_fuse(t, tvb, off, info, full)
        elseif typ == 0 and (subtype == 7 or subtype == 8) then
            dissect_unlock(t, tvb, off, info, full)
        elseif typ == 2 then
            dissect_index(t, tvb, off, info, full)
        elseif typ == 3 then
            dissect_tree_entry(t, tvb, off, info, full)
        elseif typ == 5 then
            if rest ~= 8 then return malformed(t, tvb, "VERIFY_REQUEST payload is not 8 bytes") end
            t:add_le(pf.verify_id, tvb:range(off, 8))
        elseif typ == 6 then
            if rest ~= 40 then return malformed(t, tvb, "VERIFY payload is not 40 bytes") end
            t:add_le(pf.verify_id, tvb:range(off, 8))
            t:add(pf.verify_csum, tvb:range(off + 8, 32))
        else
            payload_len()
        end
    elseif which == "kvstore" then
        if typ == 0 and subtype == 1 then
            dissect_kv_update(t, tvb, off, info, full)
        elseif typ == 0 and subtype == 3 then
            if rest < 48 then return malformed(t, tvb, "LOG entry shorter than 48 bytes") end
            if full > tvb:len() then return malformed(t, tvb, "LOG entry: cut") end
            local _, size = dissect_clog_entry(t, tvb, off, rest, info)
            if size and size ~= rest then
                malformed(t, tvb, "LOG entry: its lengths do not add up to its size")
            end
        elseif typ == 2 then
            dissect_clog_buffer(t, tvb, off, info, full)
        else
            payload_len()
        end
    else
        t:add(pf.payload_len, rest)
    end
    t:append_text(", " .. table.concat(info, " "))
    return table.concat(info, " ")
end

-- Always a line for the Info column, malformed or not.
local function dissect_pmxcfs(tvb, pinfo, root, group, sender, sender_pid, full)
    return pmxcfs_body(tvb, pinfo, root, group, sender, sender_pid, full)
        or (group_kind(group) .. " (malformed)")
end

------------------------------------------------------------------------
-- CPG
------------------------------------------------------------------------

-- Reassembly state, filled on the first pass through the file and read on
-- every later one: the results per multicast (ring, seq) and piece.
local totempg_partial = {}   -- (sender, fragment id) -> ByteArray
local totempg_results = {}   -- "ring:seq" -> { [piece] = { kind, bytes } }
local cpg_partial = {}       -- (sender, pid, group) -> ByteArray
local cpg_results = {}       -- "ring:seq:piece" -> ByteArray (a whole partial mcast)
local mcast_first = {}       -- "ring:seq" -> frame number of its first copy

local function cpg_name(tvb, off, le)
    local n = u32(tvb, off, le)
    if n > 128 then n = 128 end
    return tvb:range(off + 8, 128):raw():sub(1, n), n
end

local function add_cpg_name(t, tvb, off, le)
    local name, n = cpg_name(tvb, off, le)
    add(t, cf.group_len, tvb, off, 4, le)
    t:add(cf.group, tvb:range(off + 8, math.max(n, 0)), (name:gsub("%z$", "")))
    return name
end

local function dissect_cpg(tvb, off, pinfo, root, le, sender, key)
    local fn = u16(tvb, off, le)
    local size = tvb:len() - off
    local t = root:add(cpg_proto, tvb:range(off))
    add(t, cf.fn, tvb, off, 2, le)
    local info = CPG_FNS[fn] or ("fn " .. fn)
    if (fn == 0 or fn == 1) and size >= 168 then
        local name = add_cpg_name(t, tvb, off + 16, le)
        add(t, cf.pid, tvb, off + 152, 4, le)
        add(t, cf.reason, tvb, off + 160, 4, le)
        info = string.format("%s %s pid %d", info, (name:gsub("%z$", "")), u32(tvb, off + 152, le))
    elseif fn == 2 and size >= 24 then
        local n = math.floor((size - 24) / 144)
        t:add(cf.joinlist_entries, tvb:range(off, 24), n)
        for i = 0, n - 1 do
            local at = off + 24 + 144 * i
            local e = add(t, cf.pid, tvb, at, 4, le)
            add_cpg_name(e, tvb, at + 8, le)
        end
        info = info .. " (" .. n .. ")"
    elseif fn == 3 and size >= 184 then
        local group = add_cpg_name(t, tvb, off + 16, le)
        local msglen = u32(tvb, off + 152, le)
        add(t, cf.msglen, tvb, off + 152, 4, le)
        add(t, cf.pid, tvb, off + 160, 4, le)
        add(t, cf.nodeid, tvb, off + 168, 4, le)
        if 184 + msglen > size then
            malformed(t, tvb, "cpg mcast: the message is longer than what follows")
            return info
        end
        local payload = tvb:range(off + 184, msglen)
        t:add(cf.payload, payload)
        info = dissect_pmxcfs(payload:tvb(), pinfo, root, group, sender, u32(tvb, off + 160, le))
    elseif fn == 5 and size >= 32 then
        add(t, cf.old_members, tvb, off + 16, 4, le)
        add(t, cf.left_nodes, tvb, off + 24, 4, le)
        local n = math.min(u32(tvb, off + 24, le), math.floor((size - 32) / 4))
        for i = 0, n - 1 do
            add(t, cf.left_node, tvb, off + 32 + 4 * i, 4, le)
        end
    elseif fn == 6 and size >= 200 then
        local group = add_cpg_name(t, tvb, off + 16, le)
        add(t, cf.msglen, tvb, off + 152, 4, le)
        add(t, cf.fraglen, tvb, off + 160, 4, le)
        add(t, cf.pid, tvb, off + 168, 4, le)
        add(t, cf.partial_type, tvb, off + 176, 4, le)
        add(t, cf.nodeid, tvb, off + 184, 4, le)
        local fraglen, pid, ptype = u32(tvb, off + 160, le), u32(tvb, off + 168, le), u32(tvb, off + 176, le)
        if 200 + fraglen > size then
            malformed(t, tvb, "cpg partial mcast: the fragment is longer than what follows")
            return info
        end
        local frag = tvb:range(off + 200, fraglen)
        t:add(cf.payload, frag)
        if not cpg_results[key] and not pinfo.visited then
            local k = sender .. ":" .. pid .. ":" .. group
            if ptype == 1 then cpg_partial[k] = ByteArray.new() end
            local buf = cpg_partial[k]
            if buf then
                buf:append(frag:bytes())
                if ptype == 3 then
                    cpg_results[key] = buf
                    cpg_partial[k] = nil
                end
            end
        end
        local whole = cpg_results[key]
        if whole then
            info = dissect_pmxcfs(whole:tvb("Reassembled CPG message"), pinfo, root, group, sender, pid)
        end
    end
    return info
end

local function dissect_group_message(tvb, pinfo, root, le, sender, key)
    local pg = root:add(totempg_proto, tvb())
    if tvb:len() < 2 then return malformed(pg, tvb, "group header shorter than 2 bytes") end
    local g = u16(tvb, 0, le)
    add(pg, pgf.groups, tvb, 0, 2, le)
    local at = 2 + 2 * g
    if at > tvb:len() then return malformed(pg, tvb, "group header longer than the message") end
    local name = ""
    for i = 0, g - 1 do
        local n = u16(tvb, 2 + 2 * i, le)
        if at + n > tvb:len() then return malformed(pg, tvb, "group name longer than the message") end
        local s = tvb:range(at, n):raw()
        pg:add(pgf.group, tvb:range(at, n), s)
        if i == 0 then name = s end
        at = at + n
    end
    if tvb:len() - at < 16 then
        return malformed(pg, tvb, "service message shorter than its 16-byte header")
    end
    if name == "sync" then
        add(pg, pgf.sync_type, tvb, at, 4, le)
        local typ = u32(tvb, at, le)
        if tvb:len() - at >= 28 then
            pg:add(pgf.sync_ring, tvb:range(at + 16, 12), ring_text(tvb, at + 16, le))
        end
        if typ == 1 and tvb:len() - at >= 40 then
            local n = u32(tvb, at + 32, le)
            add(pg, pgf.sync_count, tvb, at + 32, 4, le)
            for i = 0, math.min(n, math.floor((tvb:len() - at - 40) / 4)) - 1 do
                add(pg, pgf.sync_service, tvb, at + 40 + 4 * i, 4, le)
            end
        end
        return "sync " .. (typ == 0 and "barrier" or "service_build")
    end
    local id = u32(tvb, at, le)
    local service, fn = math.floor(id / 65536), id % 65536
    pg:add(pgf.service, tvb:range(at, 4), service)
    pg:add(pgf.fn, tvb:range(at, 4), fn)
    add(pg, pgf.size, tvb, at + 8, 4, le)
    if service == 2 then
        return dissect_cpg(tvb, at, pinfo, root, le, sender, key)
    end
    local names = { [0] = "cmap", [1] = "cfg", [3] = "quorum", [4] = "pload", [5] = "votequorum", [6] = "mon", [7] = "wd" }
    return (names[service] or ("service " .. service)) .. " fn " .. fn
end

-- The totempg payload of one multicast of `sender`; `key`: "ring:seq".
local function dissect_totempg(tvb, pinfo, root, le, sender, key)
    local pg = root:add(totempg_proto, tvb())
    if tvb:len() < 8 then
        malformed(pg, tvb, "totempg header shorter than 8 bytes")
        return {}
    end
    add(pg, pgf.version, tvb, 0, 2, le)
    add(pg, pgf.type, tvb, 2, 2, le)
    pg:add(pgf.fragmented, tvb:range(4, 1))
    pg:add(pgf.continuation, tvb:range(5, 1))
    add(pg, pgf.msg_count, tvb, 6, 2, le)
    local fragmented, continuation, n = u8(tvb, 4), u8(tvb, 5), u16(tvb, 6, le)
    if 8 + 2 * n > tvb:len() then
        malformed(pg, tvb, "totempg: more lengths than bytes")
        return {}
    end
    local lengths, total = {}, 8 + 2 * n
    for i = 1, n do
        lengths[i] = u16(tvb, 8 + 2 * (i - 1), le)
        add(pg, pgf.length, tvb, 8 + 2 * (i - 1), 2, le)
        total = total + lengths[i]
    end
    if total ~= tvb:len() then
        malformed(pg, tvb, "totempg: the lengths do not add up to the multicast")
        return {}
    end
    -- First pass: what each piece is.
    if not totempg_results[key] and not pinfo.visited then
        local results = {}
        local at = 8 + 2 * n
        for i = 1, n do
            local piece = lengths[i] > 0 and tvb:range(at, lengths[i]):bytes() or ByteArray.new()
            local r = { kind = "complete" }
            if i == 1 and continuation ~= 0 then
                local k = sender .. ":" .. continuation
                local buf = totempg_partial[k]
                totempg_partial[k] = nil
                if buf then
                    buf:append(piece)
                    r = { kind = "assembled", bytes = buf }
                else
                    r = { kind = "orphan" }
                end
            end
            if i == n and fragmented ~= 0 and r.kind ~= "orphan" then
                totempg_partial[sender .. ":" .. fragmented] = r.bytes or piece
                r = { kind = "fragment" }
            end
            results[i] = r
            at = at + lengths[i]
        end
        totempg_results[key] = results
    end
    local results = totempg_results[key] or {}
    local infos = {}
    local at = 8 + 2 * n
    for i = 1, n do
        local r = results[i] or { kind = "complete" }
        local piece_key = key .. ":" .. i
        if lengths[i] == 0 then
            r = { kind = "empty" }
        end
        local range = lengths[i] > 0 and tvb:range(at, lengths[i]) or nil
        if r.kind == "empty" then
            malformed(pg, tvb, "an empty packed message")
        elseif r.kind == "complete" then
            infos[#infos + 1] = dissect_group_message(range:tvb(), pinfo, root, le, sender, piece_key)
        elseif r.kind == "assembled" then
            local item = pg:add(pgf.piece, range)
            item:add(pgf.reassembled, range, true)
            infos[#infos + 1] = dissect_group_message(r.bytes:tvb("Reassembled totempg message"),
                pinfo, root, le, sender, piece_key)
        elseif r.kind == "fragment" then
            pg:add(pgf.piece, range):append_text(" (continued in a later multicast of this sender)")
            infos[#infos + 1] = "fragment"
        else
            pg:add(pgf.piece, range):add_proto_expert_info(ex_orphan)
            infos[#infos + 1] = "fragment (start not captured)"
        end
        at = at + lengths[i]
    end
    return infos
end

------------------------------------------------------------------------
-- totem
------------------------------------------------------------------------

local function dissect_totem(tvb, pinfo, root, inner)
    if tvb:len() < 13 then return nil end
    local b0, b1 = u8(tvb, 0), u8(tvb, 1)
    local le
    if b0 == 0x70 and b1 == 0xC0 then
        le = true
    elseif b0 == 0xC0 and b1 == 0x70 then
        le = false
    else
        return nil
    end
    local t = root:add(totem_proto, tvb())
    add(t, tf.magic, tvb, 0, 2, le)
    t:add(tf.big_endian, tvb:range(0, 2), not le)
    t:add(tf.version, tvb:range(2, 1))
    t:add(tf.type, tvb:range(3, 1))
    t:add(tf.encapsulated, tvb:range(4, 1))
    add(t, tf.nodeid, tvb, 5, 4, le)
    add(t, tf.target, tvb, 9, 4, le)
    local typ = u8(tvb, 3)
    local nodeid = u32(tvb, 5, le)
    local len = tvb:len()
    local info = TOTEM_TYPES[typ] or ("type " .. typ)
    if typ == 1 then
        if len < 45 then
            malformed(t, tvb, "mcast shorter than 45 bytes")
            return info
        end
        add(t, tf.system_from, tvb, 13, 4, le)
        add(t, tf.seq, tvb, 17, 4, le)
        add(t, tf.this_seqno, tvb, 21, 4, le)
        local ring = add_ring(t, tf.ring, tvb, 25, le)
        add(t, tf.node_id, tvb, 37, 4, le)
        add(t, tf.guarantee, tvb, 41, 4, le)
        local seq = u32(tvb, 17, le)
        local key = ring .. ":" .. seq
        if not pinfo.visited and not mcast_first[key] then
            mcast_first[key] = pinfo.number
        end
        local first = mcast_first[key]
        if first and first ~= pinfo.number then
            t:add(tf.copy_of, tvb:range(17, 4), first)
        end
        info = string.format("mcast ring %s seq %d from %d", ring, seq, nodeid)
        if u8(tvb, 4) == 1 and len > 45 then
            local inner_info = dissect_totem(tvb:range(45):tvb(), pinfo, root, true)
            return info .. ", recovery of [" .. (inner_info or "?") .. "]"
        end
        if len > 45 then
            local infos = dissect_totempg(tvb:range(45):tvb(), pinfo, root, le, nodeid, key)
            if #infos > 0 then
                info = info .. ": " .. table.concat(infos, "; ")
            end
        end
    elseif typ == 0 and len >= 57 then
        add(t, tf.seq, tvb, 13, 4, le)
        add(t, tf.token_seq, tvb, 17, 4, le)
        add(t, tf.aru, tvb, 21, 4, le)
        add(t, tf.aru_addr, tvb, 25, 4, le)
        local ring = add_ring(t, tf.ring, tvb, 29, le)
        add(t, tf.backlog, tvb, 41, 4, le)
        add(t, tf.fcc, tvb, 45, 4, le)
        add(t, tf.retrans_flg, tvb, 49, 4, le)
        add(t, tf.rtr_entries, tvb, 53, 4, le)
        local n = math.min(u32(tvb, 53, le), math.floor((len - 57) / 16))
        for i = 0, n - 1 do
            local at = 57 + 16 * i
            local r = add_ring(t, tf.ring, tvb, at, le)
            add(t, tf.rtr_seq, tvb, at + 12, 4, le)
        end
        info = string.format("token ring %s seq %d aru %d", ring, u32(tvb, 13, le), u32(tvb, 21, le))
    elseif typ == 3 and len >= 33 then
        add(t, tf.system_from, tvb, 13, 4, le)
        add(t, tf.proc_entries, tvb, 17, 4, le)
        add(t, tf.failed_entries, tvb, 21, 4, le)
        add(t, tf.join_ring_seq, tvb, 25, 8, le)
        local p, f = u32(tvb, 17, le), u32(tvb, 21, le)
        local at = 33
        local procs = {}
        for i = 1, p do
            if at + 4 > len then break end
            add(t, tf.proc, tvb, at, 4, le)
            procs[#procs + 1] = tostring(u32(tvb, at, le))
            at = at + 4
        end
        for _ = 1, f do
            if at + 4 > len then break end
            add(t, tf.failed, tvb, at, 4, le)
            at = at + 4
        end
        info = string.format("join from %d: [%s]%s", u32(tvb, 13, le), table.concat(procs, ","),
            nodeid == 0 and " (leave)" or "")
    elseif typ == 4 and len >= 41 then
        add(t, tf.token_seq, tvb, 13, 4, le)
        local ring = add_ring(t, tf.ring, tvb, 17, le)
        add(t, tf.retrans_flg, tvb, 29, 4, le)
        add(t, tf.memb_index, tvb, 33, 4, le)
        add(t, tf.addr_entries, tvb, 37, 4, le)
        local n = u32(tvb, 37, le)
        if 41 + 28 * n <= len then
            local members = {}
            for i = 0, n - 1 do
                local m = add(t, tf.member, tvb, 41 + 4 * i, 4, le)
                members[#members + 1] = tostring(u32(tvb, 41 + 4 * i, le))
                local at = 41 + 4 * n + 24 * i
                m:add(tf.old_ring, tvb:range(at, 12), ring_text(tvb, at, le))
                add(m, tf.old_aru, tvb, at + 12, 4, le)
                add(m, tf.high_delivered, tvb, at + 16, 4, le)
                add(m, tf.received_flg, tvb, at + 20, 4, le)
            end
            info = string.format("commit token ring %s members [%s]", ring, table.concat(members, ","))
        else
            malformed(t, tvb, "commit token shorter than its member entries")
        end
    elseif typ == 5 and len >= 25 then
        info = "token hold cancel ring " .. add_ring(t, tf.ring, tvb, 13, le)
    elseif typ == 2 and len >= 29 then
        add(t, tf.system_from, tvb, 13, 4, le)
        info = "merge detect ring " .. add_ring(t, tf.ring, tvb, 17, le)
    end
    return info
end

function totem_proto.dissector(tvb, pinfo, tree)
    local info = dissect_totem(tvb, pinfo, tree, false)
    if not info then
        -- Still encrypted (not from --decrypted-out), or not corosync 3.
        local item = tree:add(totem_proto, tvb())
        item:set_text("Corosync knet packet, still encrypted: decrypt it with pmxcfs-replay wire --decrypted-out")
        pinfo.cols.protocol = "KNET"
        return tvb:len()
    end
    pinfo.cols.protocol = "TOTEM"
    pinfo.cols.info = info
    return tvb:len()
end

------------------------------------------------------------------------
-- The CPG event capture format (captures/FORMAT.md)
------------------------------------------------------------------------

function capture_proto.dissector(tvb, pinfo, tree)
    pinfo.cols.protocol = "PMXCFS"
    local t = tree:add(capture_proto, tvb())
    local len = tvb:len()
    if len < 12 then
        malformed(t, tvb, "event record shorter than 12 bytes")
        return len
    end
    t:add(capf.version, tvb:range(0, 1))
    t:add(capf.kind, tvb:range(1, 1))
    t:add_le(capf.group_len, tvb:range(2, 2))
    t:add_le(capf.local_nodeid, tvb:range(4, 4))
    t:add_le(capf.local_pid, tvb:range(8, 4))
    local kind, glen = u8(tvb, 1), u16(tvb, 2, true)
    if 12 + glen > len then
        malformed(t, tvb, "group name longer than the record")
        return len
    end
    local group = tvb:range(12, glen):raw()
    t:add(capf.group, tvb:range(12, glen), (group:gsub("%z$", "")))
    local at = 12 + glen
    local rest = len - at
    local kinds = CAPTURE_KINDS[kind] or ("kind " .. kind)
    local info = kinds .. " " .. u32(tvb, 4, true) .. "/" .. u32(tvb, 8, true) .. " " .. group:gsub("%z$", "")
    if (kind == 1 or kind == 3) and rest >= 12 then
        local msglen = u32(tvb, at + 8, true)
        local sender, sender_pid
        if kind == 1 then
            t:add_le(capf.sender_nodeid, tvb:range(at, 4))
            t:add_le(capf.sender_pid, tvb:range(at + 4, 4))
            sender, sender_pid = u32(tvb, at, true), u32(tvb, at + 4, true)
            info = info .. " from " .. sender .. "/" .. sender_pid
        else
            t:add_le(capf.guarantee, tvb:range(at, 4))
            t:add_le(capf.result, tvb:range(at + 4, 4))
        end
        t:add_le(capf.msg_len, tvb:range(at + 8, 4))
        local reported = tvb:reported_len() - at
        if 12 + msglen > reported then
            malformed(t, tvb, "message longer than the record")
        elseif msglen > 0 and rest > 12 then
            -- A record Wireshark had to cut holds the message's start.
            local msg = tvb:range(at + 12, math.min(msglen, rest - 12)):tvb()
            info = info .. ": " .. dissect_pmxcfs(msg, pinfo, tree, group, sender, sender_pid, msglen)
        else
            malformed(t, tvb, "an empty message")
        end
    elseif kind == 2 and rest >= 12 then
        local counts = { u32(tvb, at, true), u32(tvb, at + 4, true), u32(tvb, at + 8, true) }
        t:add_le(capf.n_members, tvb:range(at, 4))
        t:add_le(capf.n_left, tvb:range(at + 4, 4))
        t:add_le(capf.n_joined, tvb:range(at + 8, 4))
        local p = at + 12
        local lists = { "members", "left", "joined" }
        for li, n in ipairs(counts) do
            for _ = 1, n do
                if p + 12 > len then break end
                local a = t:add_le(capf.addr_nodeid, tvb:range(p, 4))
                a:prepend_text(lists[li] .. ": ")
                a:add_le(capf.addr_pid, tvb:range(p + 4, 4))
                a:add_le(capf.addr_reason, tvb:range(p + 8, 4))
                p = p + 12
            end
        end
        info = string.format("%s members=%d left=%d joined=%d", info, counts[1], counts[2], counts[3])
    elseif kind == 4 and rest >= 16 then
        t:add_le(capf.quorate, tvb:range(at, 4))
        t:add_le(capf.ring_seq, tvb:range(at + 4, 8))
        t:add_le(capf.n_nodes, tvb:range(at + 12, 4))
        local n = math.min(u32(tvb, at + 12, true), math.floor((rest - 16) / 4))
        for i = 0, n - 1 do
            t:add_le(capf.node, tvb:range(at + 16 + 4 * i, 4))
        end
        info = info .. " quorate=" .. u32(tvb, at, true)
    elseif rest > 0 then
        t:add(capf.data, tvb:range(at, rest))
    end
    pinfo.cols.info = info
    return len
end

------------------------------------------------------------------------
-- Registration
------------------------------------------------------------------------

local udp = DissectorTable.get("udp.port")
for port = 5405, 5412 do
    udp:add(port, totem_proto)
end

local encap = (wtap_encaps and wtap_encaps.USER0) or wtap.USER0
DissectorTable.get("wtap_encap"):add(encap, capture_proto)

function totem_proto.init()
    totempg_partial, totempg_results = {}, {}
    cpg_partial, cpg_results = {}, {}
    mcast_first = {}
end
