//! `kav transcribe`: audio files through the local Whisper recogniser (only with
//! `--features whisper`; without it the subcommand says how to build it).

use std::path::PathBuf;

use anyhow::Result;
#[cfg(not(feature = "whisper"))]
use anyhow::bail;

use kav::config::Config;

#[cfg(not(feature = "whisper"))]
pub(crate) async fn transcribe(
    _cfg: Config,
    _files: Vec<PathBuf>,
    _language: String,
    _model: Option<String>,
    _beam_size: Option<u32>,
    _phone: bool,
) -> Result<()> {
    bail!(
        "this kav was built without Whisper: cargo build --release --features whisper, then scripts/fetch-models.sh"
    )
}

#[cfg(feature = "whisper")]
pub(crate) async fn transcribe(
    mut cfg: Config,
    files: Vec<PathBuf>,
    language: String,
    model: Option<String>,
    beam_size: Option<u32>,
    phone: bool,
) -> Result<()> {
    use kav::providers::audio_file;
    use kav::providers::whisper::{SAMPLE_RATE, WhisperStt, whisper_language};
    use kav::voice::audio::InboundAudio;

    if let Some(m) = model {
        cfg.whisper.model_en = m.clone();
        cfg.whisper.model_he = m.clone();
        cfg.whisper.model_other = m;
    }
    if let Some(b) = beam_size {
        cfg.whisper.beam_size = b;
    }
    let stt = WhisperStt::new(&cfg.whisper)?;
    let lang = whisper_language(&language);
    let started = std::time::Instant::now();
    stt.load().await?;
    // The first inference sets up buffers; keep it out of the measured numbers.
    stt.transcribe(vec![0; SAMPLE_RATE as usize / 2], &lang)
        .await?;
    println!(
        "model {} ({}), beam {}, loaded and warmed in {:.2} s",
        stt.model_for(&lang),
        lang,
        cfg.whisper.beam_size.max(1),
        started.elapsed().as_secs_f64()
    );
    let mut audio_total = 0.0;
    let mut processing_total = 0.0;
    for file in &files {
        let pcm = if phone {
            // The call path: mu-law frames through the session's audio graph.
            let mulaw = audio_file::load_mulaw_8k(file)?;
            let mut graph = InboundAudio::new(2, false, true);
            let mut pcm = Vec::with_capacity(mulaw.len() * 2);
            for frame in mulaw.chunks_exact(160) {
                graph.process(frame.try_into().expect("160-byte chunk"));
                pcm.extend_from_slice(graph.pcm16k());
            }
            pcm
        } else {
            audio_file::load_pcm(file, SAMPLE_RATE)?
        };
        let t = stt.transcribe(pcm, &lang).await?;
        audio_total += t.audio.as_secs_f64();
        processing_total += t.processing.as_secs_f64();
        println!(
            "{}: {:.2} s audio, {:.3} s processing, RTF {:.3}\n  {}",
            file.display(),
            t.audio.as_secs_f64(),
            t.processing.as_secs_f64(),
            t.real_time_factor(),
            t.text
        );
    }
    println!(
        "total: {} files, {:.2} s audio, {:.3} s processing, RTF {:.3}",
        files.len(),
        audio_total,
        processing_total,
        processing_total / audio_total.max(1e-9)
    );
    Ok(())
}
