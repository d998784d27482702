//! Findings: what `roomcast validate` reports, each with a stable code, a severity and a place.

use serde::Serialize;

/// How serious a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Blocks a campaign; `validate` exits 1.
    Error,
    /// Worth fixing; `validate` exits 1 only with `--deny-warnings`.
    Warning,
}

impl Severity {
    /// `error` or `warning`.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        }
    }
}

macro_rules! codes {
    ($( $(#[$doc:meta])* $variant:ident = $code:literal, $severity:ident, $title:literal; )*) => {
        /// A rule of `roomcast validate`. The `RCnnn` code is stable: CI logs and docs refer to it.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum Code {
            $( $(#[$doc])* $variant, )*
        }

        impl Code {
            /// Every rule, in code order (for the docs table and tests).
            pub const ALL: &'static [Code] = &[$(Code::$variant),*];

            /// The stable code, e.g. `RC013`.
            pub fn as_str(self) -> &'static str {
                match self { $(Code::$variant => $code,)* }
            }

            /// The severity of every finding of this rule.
            pub fn severity(self) -> Severity {
                match self { $(Code::$variant => Severity::$severity,)* }
            }

            /// A short title of the rule.
            pub fn title(self) -> &'static str {
                match self { $(Code::$variant => $title,)* }
            }
        }
    };
}

codes! {
    /// The file is not valid YAML.
    YamlSyntax = "RC001", Error, "YAML syntax error";
    /// The file is larger than the limit, or exceeds a parser budget (aliases, depth, nodes).
    InputLimit = "RC002", Error, "input exceeds a safety limit";
    /// The file is not UTF-8.
    NotUtf8 = "RC003", Error, "file is not UTF-8";
    /// A key the format does not know.
    UnknownKey = "RC004", Error, "unknown key";
    /// A value of the wrong type, or not one of the allowed words.
    WrongType = "RC005", Error, "wrong type or value";
    /// A required key is missing.
    MissingKey = "RC006", Error, "missing key";
    /// An empty file (no document, or only comments).
    EmptyFile = "RC007", Error, "empty file";
    /// A key written twice in one mapping.
    DuplicateKey = "RC008", Error, "duplicate key";
    /// A key with no value (null) where a value is required.
    NullValue = "RC009", Error, "key without a value";
    /// Two machines of a school share a MAC address.
    DuplicateMac = "RC010", Error, "duplicate MAC address";
    /// Two machines of a school share a hostname.
    DuplicateHostname = "RC011", Error, "duplicate hostname";
    /// Two machines of a school share a serial number.
    DuplicateSerial = "RC012", Error, "duplicate serial number";
    /// A MAC address that is not six hexadecimal pairs.
    MalformedMac = "RC013", Error, "malformed MAC address";
    /// A final hostname that breaks NetBIOS rules.
    NetbiosHostname = "RC014", Error, "hostname breaks NetBIOS rules";
    /// A machine whose model is not the profile's PC model.
    ModelMismatch = "RC015", Error, "machine model differs from the profile";
    /// The room's master is not one of its machines.
    MasterNotListed = "RC016", Error, "master is not a machine of the room";
    /// A MAC address no PC can have: broadcast, multicast (group bit set) or all zeros.
    UnusableMac = "RC017", Error, "MAC address no PC can have";
    /// A PC address equal to its subnet's network or broadcast address.
    UnusableAddress = "RC018", Error, "address is the subnet's network or broadcast address";
    /// Two machines of a school share an IPv4 address.
    DuplicateAddress = "RC019", Error, "duplicate IPv4 address";
    /// A profile uses a software absent from the catalog.
    SoftwareNotInCatalog = "RC020", Error, "software not in the catalog";
    /// A profile uses a version the catalog does not have.
    UnknownVersion = "RC021", Error, "software version not in the catalog";
    /// A profile uses a version that is pending or rejected.
    NotQualified = "RC022", Error, "software version not qualified";
    /// A profile uses a version qualified for another OS.
    WrongOs = "RC023", Error, "software version is for another OS";
    /// A non-free software without a licence in the profile.
    MissingLicence = "RC024", Error, "non-free software without a licence";
    /// Fewer per-seat licences than machines in the rooms using the profile.
    NotEnoughSeats = "RC025", Error, "not enough licence seats";
    /// A licence expired at `--today`.
    LicenceExpired = "RC026", Error, "licence expired";
    /// A licence that does not fit the catalog (kind, missing seats).
    LicenceMismatch = "RC027", Error, "licence does not fit the catalog";
    /// A licence that expires within 30 days of `--today`.
    LicenceExpiresSoon = "RC028", Warning, "licence expires within 30 days";
    /// A licence for a software the profile does not install.
    UnusedLicence = "RC029", Warning, "licence for a software the profile does not install";
    /// A room on a VLAN other than PEDA.
    NotPeda = "RC030", Error, "room is not on the PEDA VLAN";
    /// An OU that is not a valid DN of the domain.
    MalformedOu = "RC031", Error, "malformed OU distinguished name";
    /// A template that does not compile, or uses an undefined variable.
    TemplateError = "RC032", Error, "template error";
    /// A secret that is not a `secret:NAME` reference.
    BadSecret = "RC033", Error, "bad secret reference";
    /// A multicast group outside 239.0.0.0/8.
    MulticastOutOfScope = "RC034", Error, "multicast group outside 239.0.0.0/8";
    /// A file whose name or folder does not match its content.
    FileNameMismatch = "RC035", Error, "file name does not match its content";
    /// A room referencing a profile name@version that does not exist.
    UnknownProfile = "RC036", Error, "unknown profile";
    /// A reference that is not `name@version`.
    MalformedReference = "RC037", Error, "malformed name@version reference";
    /// An install command puts the raw licence key on a command line (visible in the process list).
    SecretOnCommandLine = "RC038", Warning, "licence key on a command line";
    /// A template over its budget: too many steps, too much data or output, too deep.
    TemplateBudget = "RC039", Error, "template over budget";
    /// A value of the right type but the wrong shape (UAI, CIDR, sha256, date, identifier...).
    InvalidValue = "RC040", Error, "invalid value";
    /// The same catalog id, profile name@version or room defined twice.
    DuplicateDefinition = "RC041", Error, "defined twice";
    /// A URL with credentials in it (`https://user:pass@host/...`).
    CredentialsInUrl = "RC042", Error, "credentials in a URL";
    /// Two rooms of one school on the same subnet.
    SharedSubnet = "RC044", Error, "two rooms of a school on one subnet";
    /// Two rooms of one school with the same multicast group.
    SharedMulticastGroup = "RC045", Error, "two rooms of a school on one multicast group";
    /// One GLPI id on two machines.
    DuplicateGlpiId = "RC046", Error, "duplicate GLPI id";
    /// Two names for one UAI.
    SchoolNameMismatch = "RC047", Error, "two names for one school";
    /// Two files whose paths differ only by case.
    CaseCollision = "RC048", Error, "paths that differ only by case";
    /// A MAC address in two schools.
    MacInTwoSchools = "RC049", Warning, "MAC address in two schools";
    /// A YAML file where no kind of file belongs.
    UnknownPlace = "RC050", Error, "YAML file in an unknown place";
}

/// One problem found in one file, at one place.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// The stable rule code, e.g. `RC013`.
    #[serde(serialize_with = "ser_code")]
    pub code: Code,
    /// `error` or `warning`.
    pub severity: Severity,
    /// The file, as given on the command line (or found under a given folder).
    pub file: String,
    /// 1-based line; 0 when the finding concerns the whole file.
    pub line: u64,
    /// 1-based column, in characters; 0 when the finding concerns the whole file.
    pub column: u64,
    /// What is wrong, in words a technician understands.
    pub message: String,
    /// The source line and a caret under the column; empty when there is no line.
    pub excerpt: String,
    /// How to fix it, when one helps.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

fn ser_code<S: serde::Serializer>(code: &Code, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(code.as_str())
}

/// One line: `file:line:col: severity[CODE]: message` (refusals of campaign, serve and deploy).
impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}[{}]: {}",
            super::source::escape_text(&self.file),
            self.line,
            self.column,
            self.severity.as_str(),
            self.code.as_str(),
            super::source::escape_text(&self.message)
        )
    }
}

impl Finding {
    /// Adds a hint.
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}
