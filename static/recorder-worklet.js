// Hearth recorder worklet: passes microphone samples (mono) to the page.
class HearthRecorder extends AudioWorkletProcessor {
  process(inputs) {
    const input = inputs[0];
    if (input && input.length > 0) {
      this.port.postMessage(input[0].slice(0));
    }
    return true;
  }
}
registerProcessor('hearth-recorder', HearthRecorder);
