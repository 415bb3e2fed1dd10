//! STUB until the install pipeline lands.
use crate::config::AutoInstall;
use crate::home::Home;
use crate::run_config::RunConfig;
use std::path::PathBuf;
pub struct InstallRequest {
    pub home: Home,
    pub auto: AutoInstall,
    pub tag: String,
    pub folder: PathBuf,
    pub template: RunConfig,
}
pub type Progress<'a> = &'a mut dyn FnMut(&str, Vec<(&'static str, String)>);
#[derive(Debug)]
pub struct InstallError(pub String);
impl std::fmt::Display for InstallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
pub fn install(req: &InstallRequest, _progress: Progress) -> Result<RunConfig, InstallError> {
    Err(InstallError(format!("{}: auto-install not built", req.tag)))
}
