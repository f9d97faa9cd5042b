// The workbench example's script: shows the release the frontend reports.
fetch("/version")
  .then((response) => response.json())
  .then(({ version }) => console.log(`workbench ${version}`));
