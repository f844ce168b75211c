#!/bin/sh
# Makes the real audio files of tests/broadcasts/test_media_files.py with Debian's encoders
# (apt-get install sox lame vorbis-tools opus-tools speex flac). Run it from this folder; the
# files are kept in git, so the tests need none of these tools. Durations are in the names.
set -eu
t=$(mktemp -d)
trap 'rm -rf "$t"' EXIT
sox -n -r 16000 -c 1 -b 16 "$t/2s-16k.wav" synth 2.0 sine 440 vol 0.5
sox -n -r 8000 -c 1 -b 16 "$t/1.5s-8k.wav" synth 1.5 sine 440 vol 0.5
# WAV: 16-bit PCM, mu-law (telephone-style recorders), IMA ADPCM, and one written to a pipe
# (its header's sizes are never fixed: 0x7ffff000).
cp "$t/1.5s-8k.wav" pcm16-1.5s.wav
sox "$t/1.5s-8k.wav" -e u-law ulaw-1.5s.wav
sox "$t/1.5s-8k.wav" -e ima-adpcm ima-adpcm-1.5s.wav
sox "$t/1.5s-8k.wav" -t wav - 2>/dev/null | cat > piped-1.5s.wav
# MP3: CBR with an ID3v2 title and LAME's Info frame, VBR with a Xing frame and no tag, MPEG 2.5
# at 8 kHz without any header frame or tag (mutagen alone does not know it by its first bytes).
lame --quiet -b 32 --tt "Bản tin sáng" --add-id3v2 "$t/2s-16k.wav" cbr-id3-2s.mp3
lame --quiet -V 5 "$t/2s-16k.wav" vbr-2s.mp3
lame --quiet -t -b 16 "$t/1.5s-8k.wav" mpeg25-bare-1.5s.mp3
# OGG: Vorbis, Opus, Speex.
oggenc -Q -q 0 "$t/2s-16k.wav" -o vorbis-2s.ogg
opusenc --quiet --bitrate 16 "$t/2s-16k.wav" opus-2s.ogg
speexenc --quiet "$t/1.5s-8k.wav" speex-1.5s.ogg
# Audio, but not MP3, WAV or OGG.
flac -s "$t/1.5s-8k.wav" -o native-1.5s.flac
