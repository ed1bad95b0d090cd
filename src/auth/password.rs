//! Passwords: Argon2id (m=19456 KiB, t=2, p=1) and the password rule of
//! `docs/api.md`: 12 to 1024 characters, not a common or breached password, not
//! containing the username or the household name, and not built from their
//! words (fewer than six letters of its own once their words are taken out).

use argon2::password_hash::phc::{Output, ParamsString, PasswordHash, Salt};
use argon2::{Algorithm, Argon2, Block, Params, Version};

use crate::domain::Invalid;

/// Memory cost in KiB.
pub const M_COST: u32 = 19_456;
/// Iterations.
pub const T_COST: u32 = 2;
/// Parallelism.
pub const P_COST: u32 = 1;
/// Shortest password, in characters.
pub const MIN_CHARS: usize = 12;
/// Longest password, in characters.
pub const MAX_CHARS: usize = 1024;

fn hasher() -> Argon2<'static> {
    // The parameters are constants within argon2's limits.
    let params = Params::new(M_COST, T_COST, P_COST, None).unwrap_or(Params::DEFAULT);
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// The PHC prefix of a hash made with today's parameters.
fn current_prefix() -> String {
    format!("$argon2id$v=19$m={M_COST},t={T_COST},p={P_COST}$")
}

/// The capacity asked for Argon2's working memory, in bytes: above the
/// highest mmap threshold glibc adapts to (32 MiB on 64-bit systems, 16 MiB
/// on 32-bit ones). An allocation that large is always its own anonymous
/// mapping, unmapped when freed, so the 19 MiB come back to the system
/// after every computation. A 19 MiB request alone is mapped only the first
/// time: freeing it raises glibc's threshold above 19 MiB, the next one
/// comes from a thread's heap and stays there (the hub kept one per
/// password worker, 19 MiB each, after a flood of wrong passwords). Only the
/// pages written are resident, so the extra capacity costs address space,
/// not memory.
const WORKING_MEMORY_CAPACITY: usize = 32 * 1024 * 1024 + 64 * 1024;

/// Runs Argon2 with working memory of its own, returned to the system
/// when it ends.
fn compute(a: &Argon2<'_>, params: &Params, pwd: &[u8], salt: &[u8], out: &mut [u8]) -> bool {
    let n = params.block_count();
    let capacity = n.max(WORKING_MEMORY_CAPACITY.div_ceil(std::mem::size_of::<Block>()));
    let mut memory: Vec<Block> = Vec::with_capacity(capacity);
    memory.resize(n, Block::default());
    a.hash_password_into_with_memory(pwd, salt, out, &mut memory[..n])
        .is_ok()
}

/// Hashes a password with a fresh random salt.
pub fn hash(password: &str) -> anyhow::Result<String> {
    let params = Params::new(M_COST, T_COST, P_COST, None)
        .map_err(|e| anyhow::anyhow!("argon2 parameters: {e}"))?;
    let salt: [u8; 16] = rand::random();
    let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
    if !compute(&hasher(), &params, password.as_bytes(), &salt, &mut out) {
        anyhow::bail!("argon2 hashing failed");
    }
    let phc = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(&params)
            .map_err(|e| anyhow::anyhow!("argon2 parameters: {e}"))?,
        salt: Some(Salt::new(&salt).map_err(|e| anyhow::anyhow!("argon2 salt: {e}"))?),
        hash: Some(Output::new(&out).map_err(|e| anyhow::anyhow!("argon2 output: {e}"))?),
    };
    Ok(phc.to_string())
}

/// Checks a password against a stored hash (using the hash's own parameters).
pub fn verify(password: &str, stored: &str) -> bool {
    let Ok(h) = PasswordHash::new(stored) else {
        return false;
    };
    let (Some(salt), Some(expected)) = (&h.salt, &h.hash) else {
        return false;
    };
    let (Ok(params), Ok(algorithm)) = (
        Params::try_from(&h),
        Algorithm::try_from(h.algorithm.as_str()),
    ) else {
        return false;
    };
    let version = match h.version.map(Version::try_from) {
        None => Version::default(),
        Some(Ok(v)) => v,
        Some(Err(_)) => return false,
    };
    let a = Argon2::new(algorithm, version, params.clone());
    let mut out = vec![0u8; expected.as_bytes().len()];
    compute(&a, &params, password.as_bytes(), salt.as_ref(), &mut out)
        && bool::from(subtle::ConstantTimeEq::ct_eq(
            out.as_slice(),
            expected.as_bytes(),
        ))
}

/// True when a stored hash was made with other parameters and should be
/// replaced at the next successful login.
pub fn needs_rehash(stored: &str) -> bool {
    !stored.starts_with(&current_prefix())
}

/// Spends the same time as a real check, for unknown usernames, so timing
/// does not tell which accounts exist.
pub fn verify_dummy(password: &str) {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let stored = DUMMY.get_or_init(|| hash("hearth-dummy-password").unwrap_or_default());
    let _ = verify(password, stored);
}

/// Applies the password rule; the error says which rule was broken.
pub fn check_rule(password: &str, username: &str, household: &str) -> Result<(), Invalid> {
    let chars = password.chars().count();
    if chars < MIN_CHARS {
        return Err(Invalid(format!(
            "the password is too short: use at least {MIN_CHARS} characters (a few unrelated words work well)"
        )));
    }
    if chars > MAX_CHARS {
        return Err(Invalid(format!(
            "the password is too long: use at most {MAX_CHARS} characters"
        )));
    }
    let lower = password.to_lowercase();
    for (what, name) in [("username", username), ("household name", household)] {
        let name = name.trim().to_lowercase();
        if name.chars().count() >= 3 && lower.contains(&name) {
            return Err(Invalid(format!("the password must not contain the {what}")));
        }
    }
    if let Some(what) = built_from_names(&lower, username, household) {
        return Err(Invalid(format!(
            "the password is made from the {what}: add words of your own"
        )));
    }
    if is_common(password) {
        return Err(Invalid(
            "the password is among commonly used or breached passwords; choose one nobody else would".into(),
        ));
    }
    Ok(())
}

/// Letters a password must keep once the words of the username and the
/// household name are taken out of it.
const OWN_LETTERS: usize = 6;

/// The words of a name that a password may not be built from: runs of
/// letters and digits of three characters or more, in lower case.
fn name_words(name: &str) -> Vec<String> {
    name.to_lowercase()
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| w.chars().count() >= 3)
        .map(str::to_owned)
        .collect()
}

/// Which name (`"username"`, `"household name"`, or both as `"username and
/// household name"`) the lower-cased `password` is built from: with every
/// word of the names taken out, fewer than [`OWN_LETTERS`] letters are
/// left ("okafors okafors okafors" for "The Okafors", "Mum2024mum!").
fn built_from_names(lower: &str, username: &str, household: &str) -> Option<&'static str> {
    let (user_words, home_words) = (name_words(username), name_words(household));
    let mut words: Vec<&String> = user_words.iter().chain(home_words.iter()).collect();
    // Longest first, so "okafors" goes before a shorter word inside it.
    words.sort_by_key(|w| std::cmp::Reverse(w.chars().count()));
    let mut rest = lower.to_owned();
    let (mut user_used, mut home_used) = (false, false);
    for w in words {
        if rest.contains(w.as_str()) {
            rest = rest.replace(w.as_str(), " ");
            user_used |= user_words.contains(w);
            home_used |= home_words.contains(w);
        }
    }
    if !(user_used || home_used)
        || rest.chars().filter(|c| c.is_alphabetic()).count() >= OWN_LETTERS
    {
        return None;
    }
    Some(match (user_used, home_used) {
        (true, true) => "username and household name",
        (true, false) => "username",
        _ => "household name",
    })
}

/// Where [`is_common`] asks zxcvbn, when not in this process: a function
/// that answers for a password, or `None` when it could not (the question
/// is then answered here).
pub type Checker = Box<dyn Fn(&str) -> Option<bool> + Send + Sync>;

static CHECKER: std::sync::OnceLock<Checker> = std::sync::OnceLock::new();

/// Sends every later [`is_common`] question to `checker` (the running hub
/// installs one that asks a short-lived process, so zxcvbn's 8 MiB of
/// dictionaries never stay in the hub's memory: BENCHMARKS.md (g)). Only
/// the first call has an effect.
pub fn use_checker(checker: Checker) {
    let _ = CHECKER.set(checker);
}

/// True when the whole password is a common password (zxcvbn's list of
/// 30,000 passwords from breaches, also reversed or in l33t spelling), or a
/// trivially guessable pattern (repeats, sequences, keyboard walks). Asks
/// the installed [`Checker`] if there is one and it answers.
pub fn is_common(password: &str) -> bool {
    CHECKER
        .get()
        .and_then(|ask| ask(password))
        .unwrap_or_else(|| is_common_here(password))
}

/// [`is_common`] computed in this process. zxcvbn builds its dictionaries
/// on first use and keeps them for the life of the process.
pub fn is_common_here(password: &str) -> bool {
    use zxcvbn::matching::Match;
    use zxcvbn::matching::patterns::MatchPattern;
    let entropy = zxcvbn::zxcvbn(password, &[]);
    let seq: &[Match] = entropy.sequence();
    let len = password.chars().count();
    let whole_common = seq.iter().any(|m| {
        m.i == 0
            && m.j + 1 == len
            && matches!(&m.pattern, MatchPattern::Dictionary(d)
                // The dictionary type is not exported; its name is stable.
                if format!("{:?}", d.dictionary_name) == "Passwords")
    });
    whole_common || (entropy.score() as u8) < 2
}

#[cfg(test)]
mod tests {
    use super::*;
    use argon2::PasswordHasher;

    #[test]
    fn hash_uses_argon2id_with_the_chosen_parameters() {
        let h = hash("correct horse battery staple").expect("hash");
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{h}");
        assert!(verify("correct horse battery staple", &h));
        assert!(!verify("correct horse battery stapler", &h));
        assert!(!needs_rehash(&h));
        // A hash with other parameters verifies and asks for a rehash.
        let weak = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(8192, 1, 1, None).expect("params"),
        )
        .hash_password(b"correct horse battery staple")
        .expect("hash")
        .to_string();
        assert!(verify("correct horse battery staple", &weak));
        assert!(needs_rehash(&weak));
    }

    #[test]
    fn rule_lengths() {
        assert!(check_rule("short one", "mum", "home").is_err());
        let ok = format!("{}{}", "plum-violet-kettle-", "x".repeat(0));
        assert!(check_rule(&ok, "mum", "home").is_ok());
        // 1024 characters of a non-repeating text pass; 1025 fail.
        let long: String = (0..1024u32)
            .map(|i| char::from(b'a' + ((i * 7 + i / 26) % 26) as u8))
            .collect();
        assert_eq!(long.chars().count(), 1024);
        assert!(
            check_rule(&long, "mum", "home").is_ok(),
            "1024 characters are accepted"
        );
        let longer = format!("{long}q");
        let e = check_rule(&longer, "mum", "home").expect_err("1025 refused");
        assert!(e.0.contains("too long"));
    }

    #[test]
    fn rule_refuses_common_and_names() {
        for common in [
            "1q2w3e4r5t6y",
            "qazwsxedcrfv",
            "password1234",
            "aaaaaaaaaaaaaa",
            "123456789012",
        ] {
            let e = check_rule(common, "mum", "home").expect_err(common);
            assert!(e.0.contains("common"), "{common}: {e}");
        }
        let e = check_rule("xx-marianne-plum-kettle", "marianne", "home").expect_err("username");
        assert!(e.0.contains("username"));
        let e = check_rule("kettle-Fernhill-violet", "mum", "fernhill").expect_err("household");
        assert!(e.0.contains("household"));
    }

    #[test]
    fn rule_refuses_passwords_built_from_the_names_words() {
        // The example: the household name's word, three times.
        let e = check_rule("okafors okafors okafors", "mum", "The Okafors")
            .expect_err("built from the household name");
        assert!(e.0.contains("made from the household name"), "{e}");
        for (pw, user, home, what) in [
            (
                "Okafors-Okafors-2024!",
                "mum",
                "The Okafors",
                "household name",
            ),
            ("okafor-okafor-ada!", "ada.okafor", "home", "username"),
            (
                "ada okafors ada okafors",
                "ada.eze",
                "The Okafors",
                "username and household name",
            ),
            (
                "cottage cottage fernhill 7",
                "mum",
                "Fernhill Cottage",
                "household name",
            ),
        ] {
            let e = check_rule(pw, user, home).expect_err(pw);
            assert!(e.0.contains(&format!("made from the {what}")), "{pw}: {e}");
        }
        // A name's word among words of one's own is allowed, and so is a
        // password that shares no word with the names.
        for (pw, user, home) in [
            ("okafors plum kettle harbour", "mum", "The Okafors"),
            ("the plum violet kettle", "mum", "The Okafors"),
            ("plum violet kettle harbour", "adaeze", "The Okafors"),
        ] {
            assert!(check_rule(pw, user, home).is_ok(), "{pw} is allowed");
        }
    }

    #[test]
    fn only_a_whole_listed_password_or_a_score_below_2_is_common() {
        // Found by cargo-mutants: every listed password the tests tried
        // also scored below 2, so the whole-password list match never was
        // what refused one, and no accepted password scored exactly 2.
        // "finalfantasy" is on zxcvbn's list (rank 6531); in alternating
        // case it scores 2, so only the list match refuses it.
        let e = check_rule("FiNaLfAnTaSy", "mum", "home").expect_err("listed");
        assert!(e.0.contains("common"), "{e}");
        // A listed password at the start only is not the whole password.
        assert!(check_rule("password-kq7vzm2x", "mum", "home").is_ok());
        // Two dictionary words, not listed: score 2, which is enough.
        assert!(check_rule("harbourkettle", "mum", "home").is_ok());
    }

    /// The CPU time this thread has used so far (user and system).
    fn thread_cpu() -> std::time::Duration {
        use nix::sys::resource::{UsageWho, getrusage};
        let usage = getrusage(UsageWho::RUSAGE_THREAD).expect("getrusage");
        let micros = |t: nix::sys::time::TimeVal| {
            u64::try_from(t.tv_sec()).expect("seconds") * 1_000_000
                + u64::try_from(t.tv_usec()).expect("microseconds")
        };
        std::time::Duration::from_micros(micros(usage.user_time()) + micros(usage.system_time()))
    }

    #[test]
    fn an_unknown_users_sign_in_costs_what_a_real_check_costs() {
        // Found by cargo-mutants: `verify_dummy` doing nothing passed every
        // test. The cost is measured as this thread's CPU time (Argon2 with
        // p=1 runs on the calling thread), which other processes on the
        // machine do not inflate the way they would wall-clock time.
        let stored = hash("plum violet kettle harbour").expect("hash");
        verify_dummy("a first guess"); // makes the dummy hash, once
        let cost = |f: &dyn Fn()| {
            let start = thread_cpu();
            f();
            thread_cpu() - start
        };
        // A real check before and after, since a busy machine's caches
        // slow all three a little (seen: 0.7 to 1.1 s each, unoptimised).
        let real_check = || assert!(!verify("a wrong guess", &stored));
        let before = cost(&real_check);
        let dummy = cost(&|| verify_dummy("a wrong guess"));
        let after = cost(&real_check);
        // Loose bounds (a quarter to four times) keep a loaded machine from
        // failing it; a dummy that skips the work costs nothing at all.
        assert!(
            dummy >= before.min(after) / 4 && dummy <= before.max(after) * 4,
            "an unknown user's check took {dummy:?} of CPU, a real one {before:?} and {after:?}"
        );
    }

    /// This process's resident anonymous memory in KiB (`RssAnon` of
    /// `/proc/self/status`: the heap and mappings, not the binary's pages).
    fn resident_kib() -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").expect("status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("RssAnon:"))
            .and_then(|v| v.trim().strip_suffix("kB"))
            .and_then(|v| v.trim().parse().ok())
            .expect("RssAnon in kB")
    }

    #[test]
    fn argon2s_working_memory_goes_back_to_the_system_after_each_hash() {
        // Found by cargo-mutants: nothing checked what
        // `WORKING_MEMORY_CAPACITY` is for. Measured in a fresh copy of
        // this test binary, so no other test's memory is counted: after a
        // first hash (which, with a 19 MiB request, raises glibc's mmap
        // threshold when freed), two more must leave nothing resident.
        const CHILD: &str = "HEARTH_TEST_ARGON2_MEMORY_CHILD";
        const NAME: &str =
            "auth::password::tests::argon2s_working_memory_goes_back_to_the_system_after_each_hash";
        if std::env::var_os(CHILD).is_some() {
            hash("plum violet kettle harbour").expect("hash");
            let before = resident_kib();
            for _ in 0..2 {
                hash("plum violet kettle harbour").expect("hash");
            }
            println!("resident-kib {before} {}", resident_kib());
            return;
        }
        let mut child = std::process::Command::new(std::env::current_exe().expect("test binary"))
            .args(["--exact", NAME, "--nocapture", "--test-threads=1"])
            .env(CHILD, "1")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start the test binary");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait") {
                break status;
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the child did not finish its three hashes in 120 s");
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        let mut out = String::new();
        std::io::Read::read_to_string(&mut child.stdout.take().expect("stdout"), &mut out)
            .expect("read the child's output");
        assert!(status.success(), "the child failed: {status}\n{out}");
        let line = out
            .lines()
            // libtest prints the test's name on the same line.
            .find_map(|l| l.split_once("resident-kib ").map(|(_, kib)| kib))
            .unwrap_or_else(|| panic!("no measurement in the child's output:\n{out}"));
        let kib: Vec<u64> = line.split(' ').map(|n| n.parse().expect("KiB")).collect();
        let grown = kib[1].saturating_sub(kib[0]);
        // Argon2's working memory is 19 MiB; anything near it stayed.
        assert!(
            grown < 4 * 1024,
            "{grown} KiB more resident after two more hashes ({line})"
        );
    }
}
