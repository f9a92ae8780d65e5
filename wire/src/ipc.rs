//! The `pve2` IPC messages (spec §6.3–6.4): libqb's request and response
//! headers, and the request payloads of the 12 opcodes as PVE::IPCC packs
//! them.
//!
//! Decoding applies the length and string checks the C server makes on the
//! bytes alone, and reports them with the errno C answers. Checks that need
//! the server's state (access rights, the vmlist, the stores) come in C
//! between some of those; for those opcodes the bytes are kept and the
//! remaining checks are methods (`property`, `property_names`) the server
//! calls at the right point.

use crate::codec::{
    array_field, decode_frame, fail, i32_field, rest, u32_field, u8_field, ErrorKind, PResult, Put,
    WireError,
};

pub const REQUEST_HEADER_LEN: usize = 16;
pub const RESPONSE_HEADER_LEN: usize = 24;

pub const EPERM: i32 = 1;
pub const ENOENT: i32 = 2;
pub const EIO: i32 = 5;
pub const ENOMEM: i32 = 12;
pub const EINVAL: i32 = 22;
pub const EFBIG: i32 = 27;
pub const ECHRNG: i32 = 44;

/// Offsets (from the request start) where variable data begins.
pub const SET_STATUS_VALUE_OFFSET: usize = 272;
pub const GET_STATUS_LEN: usize = 528;
pub const LOG_DATA_OFFSET: usize = 19;
pub const CLUSTER_LOG_USER_OFFSET: usize = 32;
pub const PROPERTY_OFFSET: usize = 20;
pub const PROPERTIES_NAMES_OFFSET: usize = 21;

/// IPC opcodes (`cfs-ipc-ops.h`). 9 is unassigned; any unknown value is
/// kept and answered with ECHRNG.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Opcode {
    GetFsVersion,
    GetClusterInfo,
    GetGuestList,
    SetStatus,
    GetStatus,
    GetConfig,
    LogClusterMsg,
    GetClusterLog,
    GetRrdDump,
    GetGuestConfigProperty,
    VerifyToken,
    GetGuestConfigProperties,
    Unknown(i32),
}

impl From<i32> for Opcode {
    fn from(v: i32) -> Self {
        match v {
            1 => Opcode::GetFsVersion,
            2 => Opcode::GetClusterInfo,
            3 => Opcode::GetGuestList,
            4 => Opcode::SetStatus,
            5 => Opcode::GetStatus,
            6 => Opcode::GetConfig,
            7 => Opcode::LogClusterMsg,
            8 => Opcode::GetClusterLog,
            10 => Opcode::GetRrdDump,
            11 => Opcode::GetGuestConfigProperty,
            12 => Opcode::VerifyToken,
            13 => Opcode::GetGuestConfigProperties,
            n => Opcode::Unknown(n),
        }
    }
}

impl From<Opcode> for i32 {
    fn from(o: Opcode) -> i32 {
        match o {
            Opcode::GetFsVersion => 1,
            Opcode::GetClusterInfo => 2,
            Opcode::GetGuestList => 3,
            Opcode::SetStatus => 4,
            Opcode::GetStatus => 5,
            Opcode::GetConfig => 6,
            Opcode::LogClusterMsg => 7,
            Opcode::GetClusterLog => 8,
            Opcode::GetRrdDump => 10,
            Opcode::GetGuestConfigProperty => 11,
            Opcode::VerifyToken => 12,
            Opcode::GetGuestConfigProperties => 13,
            Opcode::Unknown(n) => n,
        }
    }
}

/// `qb_ipc_request_header`: id and total size, each 8-aligned. The padding
/// bytes are kept as received.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestHeader {
    pub id: i32,
    pub size: i32,
    pub padding: [[u8; 4]; 2],
}

impl RequestHeader {
    pub fn new(id: i32, size: usize) -> RequestHeader {
        RequestHeader {
            id,
            size: i32::try_from(size).unwrap_or(i32::MAX),
            padding: [[0; 4]; 2],
        }
    }

    pub fn opcode(&self) -> Opcode {
        self.id.into()
    }

    pub fn parse(i: &[u8]) -> PResult<'_, RequestHeader> {
        let (i, id) = i32_field("id")(i)?;
        let (i, pad0) = array_field::<4>("padding")(i)?;
        let (i, size) = i32_field("size")(i)?;
        let (i, pad1) = array_field::<4>("padding")(i)?;
        Ok((
            i,
            RequestHeader {
                id,
                size,
                padding: [pad0, pad1],
            },
        ))
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        out.put_i32(self.id);
        out.put_bytes(&self.padding[0]);
        out.put_i32(self.size);
        out.put_bytes(&self.padding[1]);
    }
}

/// A request payload. String fields are kept as their raw bytes (what the
/// client sent, terminators included) so a request re-encodes identically;
/// accessors give what the C server reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RequestBody {
    GetFsVersion,
    GetClusterInfo,
    GetGuestList,
    GetRrdDump,
    SetStatus {
        name: [u8; 256],
        value: Vec<u8>,
    },
    GetStatus {
        name: [u8; 256],
        nodename: [u8; 256],
        /// C ignores anything after the two fields.
        trailing: Vec<u8>,
    },
    GetConfig {
        path: Vec<u8>,
    },
    LogClusterMsg {
        priority: u8,
        ident: Vec<u8>,
        tag: Vec<u8>,
        msg: Vec<u8>,
    },
    GetClusterLog {
        max_entries: u32,
        reserved: [u32; 3],
        user: Vec<u8>,
    },
    GetGuestConfigProperty {
        vmid: u32,
        property: Vec<u8>,
    },
    VerifyToken {
        /// Without the terminating NUL.
        token: Vec<u8>,
    },
    GetGuestConfigProperties {
        vmid: u32,
        num_props: u8,
        names: Vec<u8>,
    },
    Unknown {
        payload: Vec<u8>,
    },
}

/// A request that the C server answers with an error before looking at any
/// state: the errno it answers, and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestError {
    /// Positive errno value; the response carries its negation.
    pub errno: i32,
    pub error: WireError,
}

impl std::fmt::Display for RequestError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "errno {}: {}", self.errno, self.error)
    }
}

impl std::error::Error for RequestError {}

/// A C string field the server forces to end in NUL at its last byte: the
/// string it then reads is everything up to the first NUL of the field with
/// the last byte dropped.
fn forced_c_str(field: &[u8]) -> &[u8] {
    let cut = &field[..field.len().saturating_sub(1)];
    crate::codec::c_str(cut)
}

fn einval<'a>(
    at: &'a [u8],
    field: &'static str,
    kind: ErrorKind,
) -> nom::Err<crate::codec::Fail<'a>> {
    fail(at, field, kind)
}

impl RequestBody {
    pub fn opcode(&self) -> Opcode {
        match self {
            RequestBody::GetFsVersion => Opcode::GetFsVersion,
            RequestBody::GetClusterInfo => Opcode::GetClusterInfo,
            RequestBody::GetGuestList => Opcode::GetGuestList,
            RequestBody::GetRrdDump => Opcode::GetRrdDump,
            RequestBody::SetStatus { .. } => Opcode::SetStatus,
            RequestBody::GetStatus { .. } => Opcode::GetStatus,
            RequestBody::GetConfig { .. } => Opcode::GetConfig,
            RequestBody::LogClusterMsg { .. } => Opcode::LogClusterMsg,
            RequestBody::GetClusterLog { .. } => Opcode::GetClusterLog,
            RequestBody::GetGuestConfigProperty { .. } => Opcode::GetGuestConfigProperty,
            RequestBody::VerifyToken { .. } => Opcode::VerifyToken,
            RequestBody::GetGuestConfigProperties { .. } => Opcode::GetGuestConfigProperties,
            RequestBody::Unknown { .. } => Opcode::Unknown(0),
        }
    }

    /// Parse the bytes after the header for `opcode`. Every failure here is
    /// answered with EINVAL by C.
    fn parse(opcode: Opcode, i: &[u8]) -> PResult<'_, RequestBody> {
        let total = REQUEST_HEADER_LEN + i.len();
        let too_short = |minimum: usize| ErrorKind::TooShort {
            minimum: minimum - REQUEST_HEADER_LEN,
            actual: i.len(),
        };
        match opcode {
            Opcode::GetFsVersion
            | Opcode::GetClusterInfo
            | Opcode::GetGuestList
            | Opcode::GetRrdDump => {
                if !i.is_empty() {
                    return Err(einval(
                        i,
                        "payload",
                        ErrorKind::TrailingBytes { count: i.len() },
                    ));
                }
                let body = match opcode {
                    Opcode::GetFsVersion => RequestBody::GetFsVersion,
                    Opcode::GetClusterInfo => RequestBody::GetClusterInfo,
                    Opcode::GetGuestList => RequestBody::GetGuestList,
                    _ => RequestBody::GetRrdDump,
                };
                Ok((i, body))
            }
            Opcode::SetStatus => {
                if total < SET_STATUS_VALUE_OFFSET {
                    return Err(einval(i, "name", too_short(SET_STATUS_VALUE_OFFSET)));
                }
                let (i, name) = array_field::<256>("name")(i)?;
                let (i, value) = rest(i)?;
                Ok((
                    i,
                    RequestBody::SetStatus {
                        name,
                        value: value.to_vec(),
                    },
                ))
            }
            Opcode::GetStatus => {
                if total < GET_STATUS_LEN {
                    return Err(einval(i, "name", too_short(GET_STATUS_LEN)));
                }
                let (i, name) = array_field::<256>("name")(i)?;
                let (i, nodename) = array_field::<256>("nodename")(i)?;
                let (i, trailing) = rest(i)?;
                Ok((
                    i,
                    RequestBody::GetStatus {
                        name,
                        nodename,
                        trailing: trailing.to_vec(),
                    },
                ))
            }
            Opcode::GetConfig => {
                if i.is_empty() {
                    return Err(einval(i, "path", too_short(REQUEST_HEADER_LEN + 1)));
                }
                let (i, path) = rest(i)?;
                Ok((
                    i,
                    RequestBody::GetConfig {
                        path: path.to_vec(),
                    },
                ))
            }
            Opcode::LogClusterMsg => {
                if total < LOG_DATA_OFFSET {
                    return Err(einval(i, "priority", too_short(LOG_DATA_OFFSET)));
                }
                let (i, priority) = u8_field("priority")(i)?;
                let (i, ident_len) = u8_field("ident_len")(i)?;
                let (i, tag_len) = u8_field("tag_len")(i)?;
                let strings = ident_len as usize + tag_len as usize;
                if i.len() < strings + 1 {
                    return Err(einval(
                        i,
                        "msg",
                        ErrorKind::TooShort {
                            minimum: strings + 1,
                            actual: i.len(),
                        },
                    ));
                }
                let (i, ident) =
                    crate::codec::nul_terminated_field("ident", ident_len as usize)(i)?;
                let (i, tag) = crate::codec::nul_terminated_field("tag", tag_len as usize)(i)?;
                let (i, msg) = rest(i)?;
                Ok((
                    i,
                    RequestBody::LogClusterMsg {
                        priority,
                        ident: ident.to_vec(),
                        tag: tag.to_vec(),
                        msg: msg.to_vec(),
                    },
                ))
            }
            Opcode::GetClusterLog => {
                if total <= CLUSTER_LOG_USER_OFFSET {
                    return Err(einval(i, "user", too_short(CLUSTER_LOG_USER_OFFSET + 1)));
                }
                let (i, max_entries) = u32_field("max_entries")(i)?;
                let (i, r0) = u32_field("reserved")(i)?;
                let (i, r1) = u32_field("reserved")(i)?;
                let (i, r2) = u32_field("reserved")(i)?;
                let (i, user) = rest(i)?;
                Ok((
                    i,
                    RequestBody::GetClusterLog {
                        max_entries,
                        reserved: [r0, r1, r2],
                        user: user.to_vec(),
                    },
                ))
            }
            Opcode::GetGuestConfigProperty => {
                if total < PROPERTY_OFFSET {
                    return Err(einval(i, "vmid", too_short(PROPERTY_OFFSET)));
                }
                let (i, vmid) = u32_field("vmid")(i)?;
                let (i, property) = rest(i)?;
                Ok((
                    i,
                    RequestBody::GetGuestConfigProperty {
                        vmid,
                        property: property.to_vec(),
                    },
                ))
            }
            Opcode::VerifyToken => {
                // tokenlen = size - 17 must be > 0, the byte at tokenlen (the
                // last one) must be the NUL, and the token may contain
                // neither a newline nor another NUL.
                if total <= REQUEST_HEADER_LEN + 1 {
                    return Err(einval(i, "token", too_short(REQUEST_HEADER_LEN + 2)));
                }
                let (token, terminator) = i.split_at(i.len() - 1);
                if terminator != [0] {
                    return Err(einval(terminator, "token", ErrorKind::MissingNul));
                }
                if let Some(n) = token.iter().position(|&b| b == b'\n' || b == 0) {
                    return Err(einval(
                        &token[n..],
                        "token",
                        ErrorKind::ForbiddenByte { byte: token[n] },
                    ));
                }
                Ok((
                    &i[i.len()..],
                    RequestBody::VerifyToken {
                        token: token.to_vec(),
                    },
                ))
            }
            Opcode::GetGuestConfigProperties => {
                if total < PROPERTIES_NAMES_OFFSET {
                    return Err(einval(i, "vmid", too_short(PROPERTIES_NAMES_OFFSET)));
                }
                let (i, vmid) = u32_field("vmid")(i)?;
                let (i, num_props) = u8_field("num_props")(i)?;
                let (i, names) = rest(i)?;
                Ok((
                    i,
                    RequestBody::GetGuestConfigProperties {
                        vmid,
                        num_props,
                        names: names.to_vec(),
                    },
                ))
            }
            Opcode::Unknown(_) => {
                let (i, payload) = rest(i)?;
                Ok((
                    i,
                    RequestBody::Unknown {
                        payload: payload.to_vec(),
                    },
                ))
            }
        }
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            RequestBody::GetFsVersion
            | RequestBody::GetClusterInfo
            | RequestBody::GetGuestList
            | RequestBody::GetRrdDump => {}
            RequestBody::SetStatus { name, value } => {
                out.put_bytes(name);
                out.put_bytes(value);
            }
            RequestBody::GetStatus {
                name,
                nodename,
                trailing,
            } => {
                out.put_bytes(name);
                out.put_bytes(nodename);
                out.put_bytes(trailing);
            }
            RequestBody::GetConfig { path } => out.put_bytes(path),
            RequestBody::LogClusterMsg {
                priority,
                ident,
                tag,
                msg,
            } => {
                out.put_u8(*priority);
                out.put_u8(ident.len().min(255) as u8);
                out.put_u8(tag.len().min(255) as u8);
                out.put_bytes(ident);
                out.put_bytes(tag);
                out.put_bytes(msg);
            }
            RequestBody::GetClusterLog {
                max_entries,
                reserved,
                user,
            } => {
                out.put_u32(*max_entries);
                for r in reserved {
                    out.put_u32(*r);
                }
                out.put_bytes(user);
            }
            RequestBody::GetGuestConfigProperty { vmid, property } => {
                out.put_u32(*vmid);
                out.put_bytes(property);
            }
            RequestBody::VerifyToken { token } => {
                out.put_bytes(token);
                out.put_u8(0);
            }
            RequestBody::GetGuestConfigProperties {
                vmid,
                num_props,
                names,
            } => {
                out.put_u32(*vmid);
                out.put_u8(*num_props);
                out.put_bytes(names);
            }
            RequestBody::Unknown { payload } => out.put_bytes(payload),
        }
    }

    /// SET_STATUS key / GET_STATUS key: the field with its last byte forced
    /// to NUL.
    pub fn status_name(name: &[u8; 256]) -> &[u8] {
        forced_c_str(name)
    }

    /// GET_CONFIG: the path C reads (last request byte forced to NUL).
    pub fn config_path(path: &[u8]) -> &[u8] {
        forced_c_str(path)
    }

    /// GET_CLUSTER_LOG: the user filter (empty = none).
    pub fn cluster_log_user(user: &[u8]) -> &[u8] {
        forced_c_str(user)
    }

    /// GET_GUEST_CONFIG_PROPERTY: the property, checked after the vmid
    /// checks as C does: an empty one is EINVAL.
    pub fn property(property: &[u8]) -> Result<&[u8], i32> {
        if property.is_empty() {
            return Err(EINVAL);
        }
        Ok(forced_c_str(property))
    }

    /// GET_GUEST_CONFIG_PROPERTIES: the names, checked after the vmid checks
    /// as C does: a count of 0, no room for a name, an empty, unterminated
    /// or non-lowercase-initial name, or bytes left over are EINVAL.
    pub fn property_names(num_props: u8, names: &[u8]) -> Result<Vec<&[u8]>, i32> {
        if num_props == 0 || names.len() <= 1 {
            return Err(EINVAL);
        }
        let mut out = Vec::with_capacity(num_props as usize);
        let mut rest = names;
        for _ in 0..num_props {
            let end = rest.iter().position(|&b| b == 0).ok_or(EINVAL)?;
            let name = &rest[..end];
            if !matches!(name.first(), Some(b'a'..=b'z')) {
                return Err(EINVAL);
            }
            out.push(name);
            rest = &rest[end + 1..];
        }
        if !rest.is_empty() {
            return Err(EINVAL);
        }
        Ok(out)
    }

    /// LOG_CLUSTER_MSG: the message as a C string (up to the first NUL, or
    /// the end of the request).
    ///
    /// C also tests the byte one past the request for NUL (spec §9.1), a
    /// read outside the message whose result depends on libqb's buffer.
    /// PVE::IPCC always terminates the message inside the request; this
    /// implementation does not look past the request.
    pub fn log_msg(msg: &[u8]) -> &[u8] {
        crate::codec::c_str(msg)
    }
}

/// A whole request: header and payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub header: RequestHeader,
    pub body: RequestBody,
}

impl Request {
    /// A request with a zero-padded header whose size matches the body.
    pub fn new(body: RequestBody) -> Request {
        Request::with_id(i32::from(body.opcode()), body)
    }

    /// For unknown opcodes, whose number the body does not carry.
    pub fn with_id(id: i32, body: RequestBody) -> Request {
        let mut payload = Vec::new();
        body.encode(&mut payload);
        Request {
            header: RequestHeader::new(id, REQUEST_HEADER_LEN + payload.len()),
            body,
        }
    }

    pub fn opcode(&self) -> Opcode {
        self.header.opcode()
    }

    /// Decode a request as the server receives it: the header's size must
    /// be the length libqb delivered.
    pub fn decode(bytes: &[u8]) -> Result<Request, RequestError> {
        decode_frame("ipc request", bytes, |i| {
            let whole = i;
            let (i, header) = RequestHeader::parse(i)?;
            if usize::try_from(header.size).ok() != Some(whole.len()) {
                return Err(fail(
                    &whole[8..],
                    "size",
                    ErrorKind::LengthMismatch {
                        expected: usize::try_from(header.size).unwrap_or(0),
                        actual: whole.len(),
                    },
                ));
            }
            let (i, body) = RequestBody::parse(header.opcode(), i)?;
            Ok((i, Request { header, body }))
        })
        .map_err(|error| RequestError {
            errno: EINVAL,
            error,
        })
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        self.header.encode(out);
        self.body.encode(out);
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode(&mut out);
        out
    }
}

/// `qb_ipc_response_header`: id, size, error, each 8-aligned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResponseHeader {
    pub id: i32,
    pub size: i32,
    /// 0 on success, −errno on failure.
    pub error: i32,
    pub padding: [[u8; 4]; 3],
}

/// A whole response. On failure C sends no payload; on success the payload
/// may be empty (C does not pad it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    pub header: ResponseHeader,
    pub payload: Vec<u8>,
}

impl Response {
    pub fn ok(id: i32, payload: Vec<u8>) -> Response {
        Response {
            header: ResponseHeader {
                id,
                size: i32::try_from(RESPONSE_HEADER_LEN + payload.len()).unwrap_or(i32::MAX),
                error: 0,
                padding: [[0; 4]; 3],
            },
            payload,
        }
    }

    /// An error response; `errno` is positive.
    pub fn error(id: i32, errno: i32) -> Response {
        Response {
            header: ResponseHeader {
                id,
                size: RESPONSE_HEADER_LEN as i32,
                error: -errno,
                padding: [[0; 4]; 3],
            },
            payload: Vec::new(),
        }
    }

    pub fn decode(bytes: &[u8]) -> Result<Response, WireError> {
        decode_frame("ipc response", bytes, |i| {
            let whole = i;
            let (i, id) = i32_field("id")(i)?;
            let (i, p0) = array_field::<4>("padding")(i)?;
            let size_at = i;
            let (i, size) = i32_field("size")(i)?;
            let (i, p1) = array_field::<4>("padding")(i)?;
            let (i, error) = i32_field("error")(i)?;
            let (i, p2) = array_field::<4>("padding")(i)?;
            if usize::try_from(size).ok() != Some(whole.len()) {
                return Err(fail(
                    size_at,
                    "size",
                    ErrorKind::LengthMismatch {
                        expected: usize::try_from(size).unwrap_or(0),
                        actual: whole.len(),
                    },
                ));
            }
            let (i, payload) = rest(i)?;
            Ok((
                i,
                Response {
                    header: ResponseHeader {
                        id,
                        size,
                        error,
                        padding: [p0, p1, p2],
                    },
                    payload: payload.to_vec(),
                },
            ))
        })
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        out.put_i32(self.header.id);
        out.put_bytes(&self.header.padding[0]);
        out.put_i32(self.header.size);
        out.put_bytes(&self.header.padding[1]);
        out.put_i32(self.header.error);
        out.put_bytes(&self.header.padding[2]);
        out.put_bytes(&self.payload);
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(RESPONSE_HEADER_LEN + self.payload.len());
        self.encode(&mut out);
        out
    }
}

/// Build a name field (`Z[256]`): the string cut to 255 bytes, NUL-padded.
pub fn name_field(name: &[u8]) -> [u8; 256] {
    let mut field = [0u8; 256];
    let n = name.len().min(255);
    field[..n].copy_from_slice(&name[..n]);
    field
}
