// The example frontend's script. Its file name carries its content hash, so it is cached for a year.
document.addEventListener("DOMContentLoaded", () => {
  const status = document.getElementById("status");
  if (status) {
    status.textContent = "Served by Stageline: this page is one immutable frontend release.";
  }
});
